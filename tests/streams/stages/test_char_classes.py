import re

import numpy as np
import pytest

from streams.stages.char_classes import ClassCounter, class_table
from streams.stages.density import _COUNTED as DENSITY_COUNTED
from streams.stages.quality_rules import _COUNTED as QUALITY_COUNTED

TEXTS = [
    "", "plain ASCII 123, with punctuation!", "中文，标点。数字１２３ and English",
    "Ünïcödé déjà-vu ٣٤٥ ۶۷ ௧௨",  # non-ASCII letters and digits of other scripts
    "emoji 😀 and 𠀀𠀁 (CJK extension B) beside 的了",  # beyond the BMP
    "\x00\x1f\u3000\uffff",
]


@pytest.mark.parametrize("counter", [DENSITY_COUNTED, QUALITY_COUNTED])
def test_counts_equal_the_regexes_findall(counter):
    got = counter.counts(TEXTS)
    want = np.array([[len(rx.findall(t)) for rx in counter.patterns] for t in TEXTS])
    assert got.shape == (len(TEXTS), len(counter.patterns))
    assert (got == want).all()
    assert got[4].sum() > 0  # the astral text counted its CJK extension characters


def test_one_text_at_a_time_equals_the_batch():
    batch = QUALITY_COUNTED.counts(TEXTS)
    for i, t in enumerate(TEXTS):
        assert (QUALITY_COUNTED.counts([t])[0] == batch[i]).all()


def test_table_refuses_a_multi_character_pattern():
    with pytest.raises(ValueError, match="one-character"):
        class_table(r"ab")
    with pytest.raises(ValueError, match="at most 8"):
        ClassCounter([re.compile("a")] * 9)
