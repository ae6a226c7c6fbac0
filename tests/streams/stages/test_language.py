"""Language identification: Chinese, English and other languages are told apart,
Chinese varieties fold into zh, code-switched Chinese–English text gets zh-en /
en-zh, and a language outside the allowed list is rejected with Reason.LANGUAGE."""
from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter

import pytest

from schemas import CuratedDocument, Reason, Rejection
from streams.stages.language import LanguageStage, code_switch, detect, detect_fast
from streams.stages.registry import build_stage, operator_names
from tests.conftest import shared_data

EN = ("The city council voted on Tuesday to extend the bus network into the northern suburbs, after a "
      "two-year study found that most residents there drive to work because no route reaches them.")
ZH = "研究人员在论文中指出，这种新型电池在低温环境下仍能保持百分之八十以上的容量，明显优于目前市场上的同类产品。"
ZH_HANT = "研究人員在論文中指出，這種新型電池在低溫環境下仍能保持百分之八十以上的容量，明顯優於目前市場上的同類產品。"
DE = ("Der Stadtrat hat am Dienstag beschlossen, das Busnetz in die nördlichen Vororte zu erweitern, "
      "weil die meisten Bewohner dort mit dem Auto zur Arbeit fahren.")
JA = "東京都は火曜日、北部の郊外までバス路線を延長することを決めました。新しい路線は来年の春に開業する予定です。"
ZH_EN = "今天终于拿到了新的 iPhone ，拍照效果真的很好，晚上和朋友去 Starbucks 喝咖啡，心情 super good ！"
EN_ZH = "What is the difference between 已经 and 早就 when talking about something that happened in the past?"


def doc(text: str, i: int = 0, lang: str | None = None) -> CuratedDocument:
    return CuratedDocument(id=f"d{i}", text=text, source="test", recipe_version="r1", lang=lang,
                           content_hash=hashlib.sha256(text.encode()).hexdigest())


def test_registered():
    assert "language" in operator_names()


def test_detect_main_languages():
    assert detect(EN)[0] == "en"
    assert detect(ZH)[0] == "zh"
    assert detect(ZH_HANT)[0] == "zh"
    assert detect(DE)[0] == "de"
    assert detect(JA)[0] == "ja"
    assert detect("   ") == ("und", 0.0)


HE = ("מועצת העיר הצביעה ביום שלישי על הרחבת רשת האוטובוסים לפרברים הצפוניים, לאחר שמחקר מצא "
      "שרוב התושבים שם נוסעים לעבודה ברכב כי אין קו שמגיע אליהם.")


def test_cascade_fast_detector_decides_clear_cases_only():
    # CLD2 answers for clear, long enough text (with its codes mapped to ISO 639-1) ...
    assert detect_fast(EN * 3, 95)[0] == "en"
    assert detect_fast(ZH_HANT * 2, 95)[0] == "zh"
    assert detect_fast(HE * 2, 95)[0] == "he"  # CLD2 says "iw"
    lang, conf = detect_fast(DE * 2, 95)
    assert lang == "de" and conf >= 0.95
    # ... and leaves short or mixed text to py3langid
    assert detect_fast("ok", 95) is None
    assert detect_fast(ZH_EN, 95) is None or detect_fast(ZH_EN, 95)[0] == "zh"
    assert detect_fast("\ud800 broken text " * 20, 95) is None  # a lone surrogate: no exception, py3langid's turn
    st, slow = LanguageStage(), LanguageStage(fast_min_percent=None)
    for text in (EN * 3, ZH * 2, DE * 2, ZH_EN, EN_ZH, JA):
        assert st.identify(text)[0] == slow.identify(text)[0], text
    assert st.identify(EN * 3)[1] == detect_fast(EN * 3, 95)[1]  # the confidence says who decided
    assert slow.identify(EN * 3)[1] == detect(EN * 3)[1]


def test_code_switch_rule():
    st = LanguageStage()
    assert st.identify(ZH_EN)[0] == "zh-en"
    assert st.identify(EN_ZH)[0] == "en-zh"
    assert st.identify(EN)[0] == "en"
    assert st.identify(ZH)[0] == "zh"
    # one Latin name in a long Chinese paragraph is not code-switching
    assert code_switch(ZH * 3 + "（Shane）", "zh") == "zh"
    # Japanese with kanji is left alone
    assert code_switch(JA + " Tokyo Metropolitan Government", "ja") == "ja"
    # thresholds are parameters
    assert code_switch(ZH_EN, "zh", min_minor_share=0.5) == "zh"


def test_sets_lang_and_confidence_and_keeps_source_value():
    out = build_stage({"op": "language"}).process(doc(ZH_EN, lang="zh"))
    assert isinstance(out, CuratedDocument)
    assert out.lang == "zh-en"
    assert out.meta["source_lang"] == "zh"
    assert 0.0 < out.scores["lang_confidence"] <= 1.0
    trusting = build_stage({"op": "language", "keep_source_lang": True}).process(doc(EN, lang="fr"))
    assert trusting.lang == "fr"


def test_allowed_languages():
    st = build_stage({"op": "language", "allowed": ["en", "zh"]})
    outs = st.process_batch([doc(EN, 1), doc(ZH, 2), doc(DE, 3), doc(ZH_EN, 4), doc(EN_ZH, 5), doc(JA, 6)])
    kinds = [o.lang if isinstance(o, CuratedDocument) else o.reason for o in outs]
    assert kinds == ["en", "zh", "language", "zh-en", "en-zh", "language"]
    rej = outs[2]
    assert isinstance(rej, Rejection) and rej.reason == Reason.LANGUAGE.value
    assert rej.detail.startswith("language: de") and rej.score > 0.5
    only_zh = build_stage({"op": "language", "allowed": ["zh"]})
    assert isinstance(only_zh.process(doc(EN_ZH)), Rejection)  # en-zh is English-first
    assert isinstance(only_zh.process(doc(ZH_EN)), CuratedDocument)
    strict = build_stage({"op": "language", "allowed": ["en"], "min_confidence": 0.999999})
    out = strict.process(doc("ok"))
    assert isinstance(out, Rejection) and "und" in out.detail


def test_deterministic():
    st = build_stage({"op": "language"})
    a = [o.to_dict() for o in st.process_batch([doc(t, i) for i, t in enumerate([EN, ZH, ZH_EN, DE])])]
    b = [o.to_dict() for o in st.process_batch([doc(t, i) for i, t in enumerate([EN, ZH, ZH_EN, DE])])]
    assert a == b


def _sample(name: str, n: int):
    with gzip.open(shared_data() / f"{name}.jsonl.gz", "rt", encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh]
    step = max(1, len(recs) // n)
    return recs[::step][:n]


@pytest.mark.parametrize("name,want,min_share", [
    ("zh_wiki_paragraphs", {"zh", "zh-en"}, 0.99),
    ("zh_reviews", {"zh", "zh-en"}, 0.99),
    ("zh_en_codeswitch", {"zh", "zh-en", "en-zh"}, 0.95),
])
def test_real_chinese_and_code_switched(name, want, min_share):
    st = LanguageStage()
    recs = _sample(name, 400)
    codes = Counter(st.identify(r["text"])[0] for r in recs)
    share = sum(codes[c] for c in want) / len(recs)
    print(name, dict(codes.most_common(6)))
    assert share >= min_share, codes


def test_real_code_switched_posts_get_two_part_codes():
    st = LanguageStage()
    recs = [r for r in _sample("zh_en_codeswitch", 2000) if r["id"].startswith("nlpcc")][:400]
    codes = Counter(st.identify(r["text"])[0] for r in recs)
    assert (codes["zh-en"] + codes["en-zh"]) / len(recs) >= 0.6, codes
    wiki = Counter(st.identify(r["text"])[0] for r in _sample("zh_wiki_paragraphs", 300))
    assert wiki["zh"] / 300 >= 0.85, wiki


def test_real_english_web_text():
    st = LanguageStage()
    recs = [r for r in _sample("web_extracted_text", 600) if r["lang"] in ("en", "de")][:300]
    agree = sum(st.identify(r["text"])[0] == r["lang"] for r in recs) / len(recs)
    assert agree >= 0.97
