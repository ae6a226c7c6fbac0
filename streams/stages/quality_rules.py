"""Cheap rule filters in the Gopher / C4 / FineWeb tradition, made to work on Chinese.

The line-removing operator ``boilerplate_lines`` lives in
:mod:`streams.stages.boilerplate_lines`; it uses the text helpers below.

``quality_rules`` and one operator per rule run document-level rules; the
first failing check rejects with ``Reason.LOW_QUALITY`` and a detail such as
``digit_ratio=0.4123 > 0.25``; the rejection's score is that value. Kept
documents carry every value in ``doc.scores``. ``quality_rules`` takes
``rules`` (a subset, default all) and every parameter below:

=============  ===========================================================  =====================
rule           values (name in scores / detail)                             parameters (default)
=============  ===========================================================  =====================
min_words      n_words (a length rule: its detail starts "too short:")          min_words 5
symbol_ratio   symbol_word_ratio: ("#" + "..." + "…") per word              max_symbol_word_ratio 0.1
digit_ratio    digit_ratio: digits per non-space character                  max_digit_ratio 0.25
alpha_words    alpha_word_ratio: tokens with a letter                       min_alpha_word_ratio 0.8
stop_words     stop_words: occurrences of stop words (en and zh lists       min_stop_words 2,
               together; other languages are not judged)                    stop_word_langs (en, zh)
word_length    mean_word_length of Latin words (only when at least          min/max_mean_word_length
               min_latin_words and min_latin_share of the words are Latin)  3 / 10, 20, 0.5
line_shape     bullet_lines, ellipsis_lines, punct_lines (shares of lines;  max_bullet_lines 0.9,
               texts of 3+ lines; punct_lines: lines ending in sentence     max_ellipsis_lines 0.3,
               punctuation, a colon, a quote / bracket or a code span)      min_punct_lines 0.12
repetition     dup_line_frac, dup_line_char_frac, top_{2,3,4}gram_char_     max_dup_line_frac 0.3,
               frac, dup_{5..10}gram_char_frac                              max_dup_line_char_frac
                                                                            0.2, (0.2, 0.18, 0.16),
                                                                            (0.15 ... 0.10),
                                                                            cjk_ngram_factor 3
=============  ===========================================================  =====================

Short texts: the ratio and count rules (symbol_ratio, digit_ratio, alpha_words,
stop_words, word_length and the n-gram part of repetition) judge only texts of
at least ``min_ratio_words`` (default 20) words, the n-gram shares of the
repetition rule texts of ``min_repetition_words`` (50, Gopher's shortest
document); two CJK characters count as one word here. A short text is not low quality
for being short, and a share over a handful of words says little: on the clean
documentation, poetry, dialogue and titles of ``bench/clean_text.py`` these rules
rejected 25-60 % of the short texts, mostly for having fewer than two stop words
(a verse, a command summary, a question title). Only ``min_words`` judges length,
and its detail says so (``too short: n_words=3 < 5``). Leading list markers
("- ", "* ", "• ") are not words for the alphabetic-token rule (documentation and
notes are lists).

Words: Chinese has no spaces, so every CJK character (and kana / hangul
syllable) counts as one word and everything else is split on whitespace; a
"word" must contain a letter or digit. For CJK-heavy text the n-grams of the
repetition rule are ``cjk_ngram_factor`` times longer (a Chinese word is about
1.5–2 characters, names are longer), the alphabetic-token rule ignores
punctuation-only tokens (Chinese punctuation stands alone between
characters), the word-length rule does not apply, and the stop-word rule uses
its Chinese list (single-character function words). ``doc.lang`` picks the
list; without it the script decides.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas import CuratedDocument, Reason
from streams.stages.base import Outcome, Stage
from streams.stages.char_classes import CJK_CHAR, CJK_CLASS, ClassCounter
from streams.stages.ngram_repeats import NGrams
from streams.stages.registry import register

# --------------------------------------------------------------------------- text helpers

_CJK_CHAR = CJK_CHAR
_TOKEN = re.compile(f"[{CJK_CLASS}]|[^\\s{CJK_CLASS}]+")
_HAS_ALNUM = re.compile(r"[^\W_]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+(?:['’][A-Za-z]+)?")
_INVISIBLE = " \t\r\f\v\u00a0\u200b\u200c\u200d\u2060\ufeff\u3000"
_PUNCT_EDGES = "\"'“”‘’()[]{}<>«»,.;:!?¡¿…-–—*_/\\|`~"


def cjk_count(text: str) -> int:
    return len(_CJK_CHAR.findall(text))


def cjk_share(text: str) -> float:
    """Share of CJK characters among the non-space characters."""
    n = len("".join(text.split()))  # str.split() splits on exactly the str.isspace() characters
    return cjk_count(text) / n if n else 0.0


def tokens(text: str) -> list[str]:
    """CJK characters one by one, other text split on whitespace (punctuation kept)."""
    return _TOKEN.findall(text)


def words(text: str) -> list[str]:
    """Tokens with at least one letter or digit."""
    return [t for t in tokens(text) if _HAS_ALNUM.search(t)]


def latin_words(text: str) -> list[str]:
    return _LATIN_WORD.findall(text)


def _is_cjk(token: str) -> bool:
    return len(token) == 1 and _CJK_CHAR.match(token) is not None


# --------------------------------------------------------------------------- stop words (own lists)

EN_STOP_WORDS = frozenset(
    "the be is are was were been to of and that have has had with for on in at by it this "
    "as not from or but you we they he she his her their our an a will would can".split()
)
# Single-character Chinese function words (counted as CJK "words"). Characters
# that often sit inside names and nouns (上, 都, 一, 个, 人) are left out.
ZH_STOP_WORDS = frozenset("的了是在和我你他她它们这那也就很不没吗呢吧啊着过把被与及而或但从对为于其之所还又该些么要会说得地")


def primary_lang(doc: CuratedDocument, text: str, share: float | None = None) -> str:
    """``en``/``zh``/other code: the document's language, or a guess from its script
    (``share``: the text's :func:`cjk_share`, when already known)."""
    lang = (doc.lang or "").lower()
    if lang:
        return lang.split("-")[0].split("_")[0]
    return "zh" if (cjk_share(text) if share is None else share) >= 0.3 else "en"


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Check:
    """One computed value and its bound: ``value`` fails when below ``low`` or above ``high``."""

    name: str
    value: float
    low: float | None = None
    high: float | None = None

    def failed(self) -> str | None:
        if self.low is not None and self.value < self.low:
            prefix = "too short: " if self.name in LENGTH_CHECKS else ""
            return f"{prefix}{self.name}={self.value:.4g} < {self.low}"
        if self.high is not None and self.value > self.high:
            return f"{self.name}={self.value:.4g} > {self.high}"
        return None


# Checks that measure length only: their detail says "too short", so the ledger tells
# a short text from a bad one.
LENGTH_CHECKS = frozenset({"n_words"})

RuleFn = Callable[[CuratedDocument, "Analysis", dict[str, Any]], list[Check]]


_DIGIT = re.compile(r"\d")
# Counted for a whole batch of texts at once (char_classes): CJK characters, digits.
_COUNTED = ClassCounter([_CJK_CHAR, _DIGIT])


class Analysis:
    """The pieces of a text that several rules need, computed once. ``counts``: the
    text's row of ``_COUNTED.counts`` when already known (a batch computes them together)."""

    def __init__(self, text: str, counts: Sequence[int] | None = None):
        self.text = text
        self.n_cjk, self.n_digit = _COUNTED.counts([text])[0].tolist() if counts is None else counts
        # Without CJK characters the tokens are the whitespace-separated runs: str.split() in C.
        self.tokens = tokens(text) if self.n_cjk else text.split()
        # str.isalnum() / isalpha() first: exact shortcuts for the usual all-letter token.
        self.words = [t for t in self.tokens if t.isalnum() or _HAS_ALNUM.search(t)]
        # Words hold no whitespace, so one join, lower() and split do them all in C.
        self.lower_words = " ".join(self.words).lower().split(" ") if self.words else []
        self.lines = [ln.strip(_INVISIBLE) for ln in text.split("\n")]
        self.nonempty_lines = [ln for ln in self.lines if ln]
        n_chars = sum(map(len, self.tokens))
        self.cjk_share = self.n_cjk / n_chars if n_chars else 0.0


# Each rule's parameters and defaults. ``quality_rules`` accepts all of them.
# Below this many words the ratio / count rules do not judge (module docstring); every
# operator of this module accepts it.
SHARED_PARAMS: dict[str, Any] = {"min_ratio_words": 20, "max_short_lines": 2}


RULE_PARAMS: dict[str, dict[str, Any]] = {
    "min_words": {"min_words": 5},
    "symbol_ratio": {"max_symbol_word_ratio": 0.1},
    "digit_ratio": {"max_digit_ratio": 0.25},
    "alpha_words": {"min_alpha_word_ratio": 0.8},
    "stop_words": {"min_stop_words": 2, "stop_word_langs": ("en", "zh")},
    "word_length": {"min_mean_word_length": 3.0, "max_mean_word_length": 10.0, "min_latin_words": 20,
                    "min_latin_share": 0.5},
    # min_punct_lines: FineWeb's line-punctuation bound (its published 0.12, not tuned here)
    "line_shape": {"max_bullet_lines": 0.9, "max_ellipsis_lines": 0.3, "min_punct_lines": 0.12},
    "repetition": {
        # the n-gram shares judge texts of this many words or more (Gopher's shortest document)
        "min_repetition_words": 50,
        "max_dup_line_frac": 0.3, "max_dup_line_char_frac": 0.2,
        # fraction of characters in the most frequent n-gram, n = 2..4
        "max_top_ngram_char_frac": (0.2, 0.18, 0.16),
        # fraction of characters in duplicated n-grams, n = 5..10
        "max_dup_ngram_char_frac": (0.15, 0.14, 0.13, 0.12, 0.11, 0.10),
        # CJK characters are shorter units than words: n-grams over CJK-heavy text use n * this
        "cjk_ngram_factor": 3,
    },
}


def _rule_min_words(doc, a: Analysis, p) -> list[Check]:
    return [Check("n_words", float(len(a.words)), low=p["min_words"])]


def word_equivalents(a: Analysis) -> float:
    """Words, counting two CJK characters as one (a Chinese word is 1.5-2 characters)."""
    return len(a.words) - a.n_cjk / 2 if a.n_cjk else float(len(a.words))


def _short(a: Analysis, p) -> bool:
    """A short paragraph: few words on at most ``max_short_lines`` lines. A short text of
    many lines is a menu or a metadata block far more often than a poem."""
    return word_equivalents(a) < p["min_ratio_words"] and len(a.nonempty_lines) <= p["max_short_lines"]


def _rule_symbol_ratio(doc, a: Analysis, p) -> list[Check]:
    if _short(a, p):
        return []
    n_sym = a.text.count("#") + a.text.count("...") + a.text.count("…")
    return [Check("symbol_word_ratio", n_sym / max(len(a.words), 1), high=p["max_symbol_word_ratio"])]


_ALPHA = re.compile(r"[^\W\d_]")


def _rule_digit_ratio(doc, a: Analysis, p) -> list[Check]:
    if _short(a, p):
        return []
    n_chars = sum(map(len, a.tokens))  # the tokens hold every non-space character
    return [Check("digit_ratio", a.n_digit / max(n_chars, 1), high=p["max_digit_ratio"])]


_CJK_PUNCT_ONLY = re.compile(
    r"^[\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65\u2018-\u201f\u2026\u00b7]+$")


# Markdown code: fenced blocks and inline spans
_CODE_SPAN = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_LIST_MARKER = re.compile(r"^[-*•·‣◦▪●○■□➢➤»>]\s")


def _rule_alpha_words(doc, a: Analysis, p) -> list[Check]:
    if _short(a, p):
        return []
    # Tokens as for words, but without the tokens made only of CJK / full-width
    # punctuation: in Chinese these stand alone (no spaces to attach them to a
    # word), whereas in English "word," is one token.
    # In CJK-heavy text spaces around punctuation are arbitrary ("好 ! !"), so
    # there every punctuation-only token is left out.
    if a.cjk_share >= 0.3:
        toks = a.words
    else:
        # Markdown code spans are commands and paths, not words (documentation)
        all_toks = tokens(_CODE_SPAN.sub(" ", a.text)) if "`" in a.text else a.tokens
        toks = [t for t in all_toks if t.isascii() or not _CJK_PUNCT_ONLY.match(t)]
    # a list item's marker is layout, not a word (each is one letterless token)
    n_markers = 0 if a.cjk_share >= 0.3 else sum(1 for ln in a.nonempty_lines if _LIST_MARKER.match(ln))
    n_toks = len(toks) - n_markers
    if n_toks <= 0:
        return [Check("alpha_word_ratio", 0.0, low=p["min_alpha_word_ratio"])]
    n_alpha = sum(1 for t in toks if t.isalpha() or _ALPHA.search(t))
    return [Check("alpha_word_ratio", n_alpha / n_toks, low=p["min_alpha_word_ratio"])]


def _rule_stop_words(doc, a: Analysis, p) -> list[Check]:
    if _short(a, p):
        return []
    lang = primary_lang(doc, a.text, a.cjk_share)
    if lang not in p["stop_word_langs"]:
        return []
    # Both lists count: code-switched text and Chinese documentation with English
    # commands have their function words in either language.
    n = 0
    if "zh" in p["stop_word_langs"] and a.n_cjk:
        n += sum(1 for w in a.words if w in ZH_STOP_WORDS)
    if "en" in p["stop_word_langs"]:
        n += sum(1 for w in a.lower_words if w.strip(_PUNCT_EDGES) in EN_STOP_WORDS)
    return [Check("stop_words", float(n), low=p["min_stop_words"])]


def _rule_word_length(doc, a: Analysis, p) -> list[Check]:
    if _short(a, p):
        return []
    lw = latin_words(a.text)
    if len(lw) < p["min_latin_words"] or len(lw) < p["min_latin_share"] * len(a.words):
        return []
    mean = sum(map(len, lw)) / len(lw)
    return [Check("mean_word_length", mean, low=p["min_mean_word_length"], high=p["max_mean_word_length"])]


_BULLET = re.compile(r"^(?:[-*•·‣◦▪●○■□➢➤»>]|\d+[.)、]|[a-zA-Z][.)])\s")


# A line that ends a sentence or introduces / is a code example (documentation: "...:" then `cmd`).
_LINE_END = tuple(".!?…\"'”’)）」』:：;；。！？`")


def _rule_line_shape(doc, a: Analysis, p) -> list[Check]:
    lines = a.nonempty_lines
    if len(lines) < 3:
        return []
    n = len(lines)
    bullets = sum(1 for ln in lines if _BULLET.match(ln))
    ellipsis = sum(1 for ln in lines if ln.endswith("...") or ln.endswith("…"))
    punct = sum(1 for ln in lines if ln.endswith(_LINE_END))
    return [Check("bullet_lines", bullets / n, high=p["max_bullet_lines"]),
            Check("ellipsis_lines", ellipsis / n, high=p["max_ellipsis_lines"]),
            Check("punct_lines", punct / n, low=p["min_punct_lines"])]


def _rule_repetition(doc, a: Analysis, p) -> list[Check]:
    checks: list[Check] = []
    lines = a.nonempty_lines
    if len(lines) > 1:
        counts = Counter(lines)
        dup_lines = [ln for ln in lines if counts[ln] > 1]
        n_chars = sum(len(ln) for ln in lines)
        checks.append(Check("dup_line_frac", len(dup_lines) / len(lines), high=p["max_dup_line_frac"]))
        checks.append(Check("dup_line_char_frac", sum(len(ln) for ln in dup_lines) / max(n_chars, 1),
                            high=p["max_dup_line_char_frac"]))
    units = a.lower_words
    if len(units) < 10 or word_equivalents(a) < p["min_repetition_words"]:
        return checks
    if "`" in a.text:
        # Markdown code spans repeat a command on purpose (documentation's examples):
        # the n-gram shares judge the prose around them.
        prose = _CODE_SPAN.sub(" ", a.text)
        units = [w.lower() for w in (tokens(prose) if a.n_cjk else prose.split()) if _HAS_ALNUM.search(w)]
        n_cjk = sum(1 for w in units if _is_cjk(w))
        if len(units) < 10 or len(units) - n_cjk / 2 < p["min_repetition_words"]:
            return checks
    cjk_heavy = a.n_cjk >= 0.5 * len(units)
    factor = p["cjk_ngram_factor"] if cjk_heavy else 1
    grams = NGrams(units)
    for n, bound in zip((2, 3, 4), p["max_top_ngram_char_frac"]):
        checks.append(Check(f"top_{n}gram_char_frac", grams.top_char_frac(n * factor), high=bound))
    for n, bound in zip((5, 6, 7, 8, 9, 10), p["max_dup_ngram_char_frac"]):
        checks.append(Check(f"dup_{n}gram_char_frac", grams.dup_char_frac(n * factor), high=bound))
    return checks


RULES: dict[str, RuleFn] = {
    "min_words": _rule_min_words,
    "symbol_ratio": _rule_symbol_ratio,
    "digit_ratio": _rule_digit_ratio,
    "alpha_words": _rule_alpha_words,
    "stop_words": _rule_stop_words,
    "word_length": _rule_word_length,
    "line_shape": _rule_line_shape,
    "repetition": _rule_repetition,
}


class QualityRules(Stage):
    """Runs the named rules on each document; the first failing check rejects it."""

    def __init__(self, name: str, rules: Iterable[str], **params: Any):
        self.name = name
        self.rules = list(rules)
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise TypeError(f"unknown rules {unknown}; known: {sorted(RULES)}")
        allowed: dict[str, Any] = dict(SHARED_PARAMS)
        for r in self.rules:
            allowed.update(RULE_PARAMS[r])
        extra = set(params) - set(allowed)
        if extra:
            raise TypeError(f"unexpected parameters {sorted(extra)}; allowed: {sorted(allowed)}")
        self.params = {**allowed, **params}
        for key in ("max_top_ngram_char_frac", "max_dup_ngram_char_frac", "stop_word_langs"):
            if key in self.params:
                self.params[key] = tuple(self.params[key])

    def checks(self, doc: CuratedDocument, counts: Sequence[int] | None = None) -> list[Check]:
        a = Analysis(doc.text, counts)
        out: list[Check] = []
        for r in self.rules:
            out.extend(RULES[r](doc, a, self.params))
        return out

    def explain(self, doc: CuratedDocument) -> dict[str, float]:
        """Every value the rules compute for ``doc``, failing or not (for ``foundry score``)."""
        return {c.name: round(float(c.value), 6) for c in self.checks(doc)}

    def process_batch(self, docs: Sequence[CuratedDocument]) -> list[Outcome]:
        out: list[Outcome] = []
        counts = _COUNTED.counts([d.text for d in docs]).tolist()
        for doc, c in zip(docs, counts):
            checks = self.checks(doc, c)
            failed = next(((c, msg) for c in checks if (msg := c.failed())), None)
            if failed is not None:
                c, msg = failed
                out.append(self.reject(doc, Reason.LOW_QUALITY, f"{self.name}: {msg}", score=float(c.value)))
            else:
                for c in checks:
                    doc.scores[c.name] = round(float(c.value), 6)
                out.append(doc)
        return out


@register("quality_rules")
def quality_rules(rules: Iterable[str] | None = None, **params: Any) -> QualityRules:
    """All document-level rules (or those in ``rules``) with their thresholds."""
    return QualityRules("quality_rules", list(RULES) if rules is None else rules, **params)


def _single(rule: str) -> Callable[..., QualityRules]:
    def factory(**params: Any) -> QualityRules:
        return QualityRules(rule, [rule], **params)

    factory.__name__ = f"{rule}_rule"
    factory.__doc__ = f"Only the {rule!r} rule; parameters: {RULE_PARAMS[rule]}."
    return factory


for _rule in RULES:
    register(_rule)(_single(_rule))
