"""Boilerplate-line removal (cookie, legal and navigation lines), English and Chinese.

``boilerplate_lines`` removes boilerplate lines and keeps the document if
enough is left. It *changes* ``doc.text`` and adds the number of removed lines
to ``doc.meta["boilerplate_lines_removed"]``; ``doc.scores["boilerplate_lines"]``
is the share of characters kept. A line goes when

* it has at most ``max_line_words`` (30) words and contains a strong phrase
  (own English and Chinese lists: "all rights reserved", "© 2019", cookie and
  JavaScript notices, privacy / terms links, "skip to content", 版权所有, ICP备 ...);
* it has at most ``nav_max_words`` (3) words and a weak phrase ("share",
  "log in", "read more", 登录, 首页 ...) makes up at least half of it;
* it is a navigation bar: ``nav_bar_min_items`` (3) or more short items
  between separators ("Home | News | Sport", "首页 > 新闻 > 国际");
* it belongs to a run of at least ``nav_min_run`` (4) short lines without
  sentence punctuation (a menu or tag cloud); list items, numbers, table rows
  and code lines never count as short.

Words here count two CJK characters as one word. The document is rejected
(``low_quality``, detail ``boilerplate_lines: kept_fraction=...``) when lines
were removed and fewer than ``min_kept_chars`` (20) characters or less than
``min_kept_fraction`` (0.2) of the text remain. ``extra_patterns`` adds
regular expressions to the strong list.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from schemas import CuratedDocument, Reason
from streams.stages.base import Outcome, Stage
from streams.stages.quality_rules import _CJK_CHAR, _HAS_ALNUM, _INVISIBLE, CJK_CLASS
from streams.stages.registry import register

# Phrases that mark a line as boilerplate (own lists). A "strong" phrase condemns
# a line of up to ``max_line_words`` words; a "weak" one (a word that is also
# common in real text: "register", "share", 登录) only a line that is itself
# short, i.e. a menu item or a button label.
STRONG_PATTERNS_EN = (
    r"all rights reserved", r"^(?:copyright|\(c\)|©)", r"copyright\s*(?:©|\(c\)|\d{4})", r"©\s*\d{4}",
    r"\b(?:use|uses|using|accept|allow|enable|disable|our|of) cookies\b",
    r"\bcookies? (?:policy|settings|preferences|consent|notice)\b",
    r"\bjavascript (?:is|must be|seems to be) (?:disabled|required|enabled|turned off)\b",
    r"\b(?:enable|turn on|activate) javascript\b",
    r"\byour browser (?:does not|doesn't|is not|isn't)\b", r"\b(?:update|upgrade) your browser\b",
    r"\bprivacy (?:policy|statement|notice)\b", r"\bterms (?:of (?:use|service)|and conditions|& conditions)\b",
    r"\bskip to (?:main )?(?:content|navigation)\b", r"\bback to top\b",
    r"\bpowered by (?:wordpress|discuz|blogger|drupal|joomla|vbulletin|phpbb)\b",
    r"\b(?:subscribe to|sign up for) (?:our|the) newsletter\b", r"\bfollow us on\b",
    r"\bshare (?:this|on) (?:article|page|post|story|facebook|twitter)\b",
    r"\b(?:log|sign) ?in to (?:reply|comment|post)\b", r"\bforgot (?:your )?password\b", r"\bleave a (?:reply|comment)\b",
    r"\bclick here to\b",
)
# Each English strong pattern matches only text that contains one of these (lower-cased):
# a line without any of them skips the big regex, which is most of this operator's cost
# (34k short web lines: 41 us each through the regex, a few us through the substring tests).
STRONG_KEYWORDS_EN = (
    "all rights reserved", "copyright", "(c)", "©", "cookie", "javascript", "browser", "privacy", "terms",
    "skip to", "back to top", "powered by", "newsletter", "follow us on", "share ", "in to", "forgot",
    "leave a ", "click here",
)
STRONG_PATTERNS_ZH = (
    "版权所有", "版權所有", "隐私政策", "隱私權政策", "隐私条款", "免责声明", "免責聲明", "用户协议", "使用条款", "服务条款",
    "ICP备", "ICP證", "ICP证", "公网安备", "返回顶部", "回到頂部", "回到顶部", "忘记密码", "忘記密碼",
    "请启用JavaScript", "請啟用JavaScript", "浏览器不支持", "瀏覽器不支援", "powered by discuz",
)
WEAK_PATTERNS = (
    r"\b(?:log|sign) ?(?:in|up|out)\b", r"\bregister\b", r"\bsubscribe\b", r"\bnewsletter\b", r"\bshare\b",
    r"\btweet\b", r"\b(?:facebook|twitter|pinterest|linkedin|whatsapp|instagram|reddit|email)\b", r"\bread more\b",
    r"\bprint\b", r"\bcomments?\b", r"\breply\b", r"\bmenu\b", r"\bhome\b", r"\bsearch\b", r"\bcontact us\b",
    r"\bsitemap\b", r"\bprevious\b", r"\bnext\b", r"\bmore\b", r"\badvertisement\b", r"\bcookies?\b", r"\bjavascript\b",
    "登录", "登入", "注册", "註冊", "分享", "首页", "首頁", "上一篇", "下一篇", "上一页", "下一页", "网站地图", "联系我们",
    "聯絡我們", "关注我们", "關注我們", "更多", "评论", "評論", "广告", "廣告", "搜索", "收藏", "打印",
)
_NAV_SEPARATORS = re.compile(r"\s+(?:[|·•»›>/]|\\|-{1,2})\s+|\s*[｜·•»›]\s*")
_CODE_CHARS = re.compile(r"[{}()=;<>`\[\]]")
_LIST_START = re.compile(r"^(?:[-*•·+>]|\d+[.)、:]?|[a-zA-Z][.)])(?:\s|$)|^\d")
_NON_CJK_TOKEN = re.compile(f"[^\\s{CJK_CLASS}]+")
_LONG_LINE = 600  # characters; a longer line is never boilerplate
_SENTENCE_END = tuple(".!?。！？…")
_END_PUNCT = tuple(".!?\"'”’)。！？」』）…:：;；,，")


class BoilerplateLines(Stage):
    """Removes boilerplate lines; rejects a document when too little is left."""

    def __init__(self, name: str = "boilerplate_lines", *, max_line_words: int = 30, nav_max_words: float = 3,
                 nav_min_run: int = 4, nav_bar_min_items: int = 3, min_kept_chars: int = 20,
                 min_kept_fraction: float = 0.2, extra_patterns: Iterable[str] = ()):
        self.name = name
        self.max_line_words = max_line_words  # a strong phrase condemns lines up to this many words
        self.nav_max_words = nav_max_words  # a "short" line: at most this many words (CJK: 2 chars a word)
        self.nav_min_run = nav_min_run  # short lines in a run of at least this many are a menu
        self.nav_bar_min_items = nav_bar_min_items  # "Home | News | Sport" with at least this many items
        self.min_kept_chars = min_kept_chars
        self.min_kept_fraction = min_kept_fraction
        extra = list(extra_patterns)
        strong = list(STRONG_PATTERNS_EN) + [re.escape(p) for p in STRONG_PATTERNS_ZH] + extra
        self._strong = re.compile("|".join(f"(?:{p})" for p in strong), re.IGNORECASE)
        # Extra patterns have no keyword list: with any, every line goes through the regex.
        self._keywords = (None if extra else
                          tuple(STRONG_KEYWORDS_EN) + tuple(p.lower() for p in STRONG_PATTERNS_ZH))
        self._weak = re.compile("|".join(f"(?:{p})" for p in WEAK_PATTERNS), re.IGNORECASE)

    def _size(self, line: str) -> float:
        """Length in words, counting two CJK characters as one word (long lines: inf)."""
        if len(line) > _LONG_LINE:
            return float("inf")
        if line.isascii():  # no CJK, and str.split() cuts exactly where _NON_CJK_TOKEN does
            return float(sum(1 for t in line.split() if t.isalnum() or _HAS_ALNUM.search(t)))
        n_cjk = len(_CJK_CHAR.findall(line))
        n_other = sum(1 for t in _NON_CJK_TOKEN.findall(line) if t.isalnum() or _HAS_ALNUM.search(t))
        return n_other + n_cjk / 2

    def _short(self, line: str, size: float) -> bool:
        """A menu-like line: a few words, no sentence end, not a list item, number or table row."""
        return (bool(line) and size <= self.nav_max_words and not line.endswith(_END_PUNCT)
                and not _LIST_START.match(line) and not line.startswith("|") and not _CODE_CHARS.search(line))

    def _nav_bar(self, line: str) -> bool:
        if line.startswith("|") or line.endswith(_SENTENCE_END) or _CODE_CHARS.search(line):
            return False
        items = [x for x in _NAV_SEPARATORS.split(line) if x.strip()]
        return (len(items) >= self.nav_bar_min_items
                and all(self._size(x) <= self.nav_max_words for x in items))

    def _may_be_strong(self, line: str) -> bool:
        if self._keywords is None:
            return True
        low = line.lower()
        return any(k in low for k in self._keywords)

    def _boilerplate(self, line: str, size: float) -> bool:
        if size > self.max_line_words:
            return False
        if self._may_be_strong(line) and self._strong.search(line):
            return True
        if size <= self.nav_max_words and not line.startswith("#") and not _CODE_CHARS.search(line):
            # a weak phrase must be most of the line: "Read more", "Share", "登录 注册"
            n_chars = len(line) - line.count(" ")
            covered = sum(len(m.group(0).replace(" ", "")) for m in self._weak.finditer(line))
            if n_chars and covered / n_chars >= 0.5:
                return True
        return self._nav_bar(line)

    def clean(self, text: str) -> tuple[str, int]:
        lines = text.split("\n")
        stripped = [ln.strip(_INVISIBLE) for ln in lines]
        sizes = [self._size(ln) if ln else 0.0 for ln in stripped]
        drop = [bool(ln) and self._boilerplate(ln, sz) for ln, sz in zip(stripped, sizes)]
        short = [self._short(ln, sz) for ln, sz in zip(stripped, sizes)]
        # runs of short lines (blank lines do not break a run) are menus / tag clouds
        i = 0
        while i < len(lines):
            if not short[i]:
                i += 1
                continue
            run = []
            j = i
            while j < len(lines) and (not stripped[j] or drop[j] or short[j]):
                if stripped[j]:
                    run.append(j)
                j += 1
            if len(run) >= self.nav_min_run:
                for k in run:
                    drop[k] = True
            i = j
        n_removed = sum(1 for k in range(len(lines)) if drop[k] and stripped[k])
        if not n_removed:
            return text, 0
        kept = [line for k, line in enumerate(lines) if not drop[k]]
        cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
        return cleaned, n_removed

    def process_batch(self, docs: Sequence[CuratedDocument]) -> list[Outcome]:
        out: list[Outcome] = []
        for doc in docs:
            cleaned, n_removed = self.clean(doc.text)
            before = len(doc.text.strip())
            frac = len(cleaned) / before if before else 0.0
            if n_removed and (len(cleaned) < self.min_kept_chars or frac < self.min_kept_fraction):
                out.append(self.reject(
                    doc, Reason.LOW_QUALITY,
                    f"{self.name}: kept_fraction={frac:.4g} ({len(cleaned)} chars) after removing "
                    f"{n_removed} lines; need >= {self.min_kept_fraction} and >= {self.min_kept_chars} chars",
                    score=frac))
                continue
            if n_removed:
                doc.text = cleaned
                doc.meta["boilerplate_lines_removed"] = doc.meta.get("boilerplate_lines_removed", 0) + n_removed
            doc.scores[self.name] = round(frac, 6) if n_removed else 1.0
            out.append(doc)
        return out


@register("boilerplate_lines")
def boilerplate_lines(**params: Any) -> BoilerplateLines:
    return BoilerplateLines(**params)
