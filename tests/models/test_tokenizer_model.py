"""The shipped SentencePiece model: it loads from the repository, round-trips any
text, meets its targets on the held-out documents of the shared corpora (at most
1 token per Chinese character, at least 4 bytes per token on English web text),
and the build script is deterministic."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from pathlib import Path

import pytest

from tests.conftest import shared_data

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "tokenizer" / "foundry-sp32k-v1.model"
CARD = ROOT / "models" / "tokenizer" / "CARD.md"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sp():
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(MODEL))


def test_model_file_and_special_ids(sp):
    assert MODEL.stat().st_size < 2_000_000
    assert sp.get_piece_size() == 32000
    assert [sp.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, 3)
    assert sp.piece_to_id("\n") == 4 and sp.piece_to_id("\n\n") == 5
    assert sp.is_byte(6) and sp.is_byte(261)


SAMPLES = [
    "The committee approved the new budget on Tuesday.\n\nIt takes effect in March.",
    "研究人员在论文中指出，这种新型电池在低温环境下仍能保持百分之八十以上的容量。",
    "對比了一下！決定入手 mv800 ！完全是虛高！ love life ！",
    "def f(x):\n    return x ** 2  # 平方\n",
    "  leading spaces, trailing spaces   \n\n\n\ttab and 🙂 emoji, Ωmega, 𠀀 (Ext. B), ｆｕｌｌｗｉｄｔｈ",
    "",
]


def test_lossless_round_trip_and_no_unk(sp):
    for text in SAMPLES:
        ids = sp.encode(text)
        assert sp.decode(ids) == text
        assert sp.unk_id() not in ids


def test_newlines_are_single_tokens_and_words_after_them_are_whole(sp):
    pieces = sp.encode("First line.\nCreative Commons\n\nThe end", out_type=str)
    assert "\n" in pieces and "\n\n" in pieces
    # no dummy prefix: a line inside a document is cut exactly as the same text on its own
    after = pieces[pieces.index("\n") + 1:pieces.index("\n\n")]
    assert after == sp.encode("Creative Commons", out_type=str)


def test_chinese_is_compact(sp):
    text = SAMPLES[1]
    n_han = len(re.findall(r"[\u4e00-\u9fff]", text))
    assert len(sp.encode(text)) <= n_han


def test_targets_on_held_out_documents():
    shared_data()
    bench = _load("foundry_bench_tokenizer", ROOT / "bench" / "tokenizer.py")
    res = bench.run(MODEL)
    print({g: {k: m[k] for k in ("docs", "tokens_per_cjk_char", "bytes_per_token")} for g, m in res.items()})
    assert res["zh wiki"]["tokens_per_cjk_char"] <= 1.0
    assert res["zh reviews"]["tokens_per_cjk_char"] <= 1.0
    assert res["en web"]["bytes_per_token"] >= 4.0
    assert res["code-switched"]["bytes_per_token"] >= 3.5
    for g, m in res.items():
        assert m["lossless_share"] == 1.0, g
        assert m["byte_fallback_share"] < 0.05, g


def test_held_out_split_is_stable_and_disjoint():
    data = shared_data()
    build = _load("foundry_tokenizer_build", ROOT / "models" / "tokenizer" / "build.py")
    assert build.held_out("zh_reviews", "waimai_10k:7") == build.held_out("zh_reviews", "waimai_10k:7")
    train = {(f, r["id"]) for f, r in build.iter_documents(data, split="train") if f == "zh_en_codeswitch"}
    held = {(f, r["id"]) for f, r in build.iter_documents(data, split="heldout") if f == "zh_en_codeswitch"}
    assert train and held and not (train & held)
    assert 0.07 < len(held) / (len(train) + len(held)) < 0.13


def test_build_is_deterministic(tmp_path):
    data = shared_data()
    build = _load("foundry_tokenizer_build", ROOT / "models" / "tokenizer" / "build.py")
    shas = []
    for i in range(2):
        out = tmp_path / f"m{i}"
        build.train(out, model_type="bpe", vocab_size=4000, character_coverage=0.9995, normalization="identity",
                    data_dir=data, sample_percent=3)
        shas.append(hashlib.sha256(Path(f"{out}.model").read_bytes()).hexdigest())
    assert shas[0] == shas[1]


@pytest.mark.skipif(not os.environ.get("FOUNDRY_REBUILD_TOKENIZER"),
                    reason="full rebuild takes about a minute; set FOUNDRY_REBUILD_TOKENIZER=1")
def test_full_rebuild_matches_committed_model(tmp_path):
    data = shared_data()
    build = _load("foundry_tokenizer_build", ROOT / "models" / "tokenizer" / "build.py")
    out = tmp_path / build.MODEL_NAME
    assert build.main(["--data", str(data), "--out", str(out)]) == 0
    sha = hashlib.sha256(Path(f"{out}.model").read_bytes()).hexdigest()
    assert sha in CARD.read_text()
    assert sha == hashlib.sha256(MODEL.read_bytes()).hexdigest()
