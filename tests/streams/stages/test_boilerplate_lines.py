"""Boilerplate lines: cookie, legal and navigation lines are removed from the text
(English and Chinese), content, code and lists are kept, a page that is all
boilerplate is rejected, and the keyword prefilter and the word-size shortcut
change no result on real pages."""
from __future__ import annotations

from schemas import CuratedDocument, Reason, Rejection
from streams.stages.boilerplate_lines import _NON_CJK_TOKEN, BoilerplateLines
from streams.stages.quality_rules import _CJK_CHAR, _HAS_ALNUM
from tests.streams.stages.test_quality_rules import EN, ODD_LINES, ZH, _by_id, _records, run

PAGE = "\n".join([
    "Skip to main content",
    "Home",
    "News",
    "Sport",
    "Weather",
    "",
    EN,
    "",
    "The new routes were drawn up with the help of residents, who answered an online survey last winter.",
    "Share on Facebook",
    "We use cookies to improve your experience. By continuing you accept our cookie policy.",
    "© 2019 Daily Example. All rights reserved.",
    "Home | About | Contact | Privacy",
])


def test_boilerplate_lines_removed_and_content_kept():
    out = run("boilerplate_lines", PAGE)
    assert isinstance(out, CuratedDocument)
    assert EN in out.text and "online survey" in out.text
    for gone in ("Skip to main", "Sport", "cookies", "All rights reserved", "Share on Facebook", "Home | About"):
        assert gone not in out.text, gone
    assert out.meta["boilerplate_lines_removed"] == 9
    assert 0.5 < out.scores["boilerplate_lines"] < 1.0


def test_boilerplate_keeps_clean_text_untouched():
    for text in (EN, ZH, "首页\n" + ZH):
        out = run("boilerplate_lines", text)
        assert isinstance(out, CuratedDocument)
    assert run("boilerplate_lines", EN).text == EN
    assert run("boilerplate_lines", "首页\n" + ZH).text == ZH  # a lone menu word is dropped


def test_boilerplate_only_page_rejected():
    page = "\n".join(["Home", "Products", "Blog", "Careers", "Log in", "Sign up",
                      "© 2024 Example Inc. All rights reserved.", "Privacy Policy", "Terms of Use"])
    out = run("boilerplate_lines", page)
    assert isinstance(out, Rejection) and out.reason == Reason.LOW_QUALITY.value
    assert out.detail.startswith("boilerplate_lines: kept_fraction=")
    assert out.score < 0.2


def test_boilerplate_chinese_footer():
    page = ZH + "\n版权所有 © 2020 某某网 京ICP备12345678号\n返回顶部"
    out = run("boilerplate_lines", page)
    assert isinstance(out, CuratedDocument) and out.text == ZH


def test_boilerplate_does_not_remove_code_or_lists():
    text = ("Install it with pip, then run the tool:\n\n- pip install example\n- example --help\n"
            "- example login\n\n`az login`\n\n" + EN)
    out = run("boilerplate_lines", text)
    assert isinstance(out, CuratedDocument) and out.text == text


# ------------------------------------------------------------------ real corpora


def test_known_boilerplate_page_rejected_for_the_right_reason():
    cookie_page = "dolma-ccmain-2019-30:ibtgetl6xgeppkjhxqckaxyvc4qh5kir"  # Italian blog: cookie banner, menu
    recs = _by_id("web_cc_text", {cookie_page})
    out = run("boilerplate_lines", recs[cookie_page]["text"])
    assert isinstance(out, Rejection) and "kept_fraction" in out.detail


def test_boilerplate_keyword_prefilter_changes_no_verdict():
    # The keyword test in front of the strong-phrase regex only skips work: with it
    # switched off (any extra pattern does that), every line of real pages gets the same verdict.
    fast = BoilerplateLines()
    full = BoilerplateLines(extra_patterns=["(?!x)x"])  # matches nothing, disables the prefilter
    assert fast._keywords is not None and full._keywords is None
    n_removed = 0
    for name in ("web_cc_text", "web_extracted_text"):
        for r in _records(name, 400):
            cleaned, removed = fast.clean(r["text"])
            assert (cleaned, removed) == full.clean(r["text"])
            n_removed += removed
    assert n_removed > 100  # the pages do hold boilerplate lines, so the comparison means something


def test_line_size_shortcut_matches_the_regex_definition():
    bl = BoilerplateLines()
    for line in ODD_LINES:
        want = sum(1 for t in _NON_CJK_TOKEN.findall(line) if _HAS_ALNUM.search(t)) + len(
            _CJK_CHAR.findall(line)) / 2
        assert bl._size(line) == want, line
