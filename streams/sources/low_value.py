"""Generated low-value sources, for demos and experiments with the budget loop.

Three kinds of text that a pretraining run should learn little from, and one
event:

* ``boilerplate``: pages that are nothing but navigation, cookie, footer and
  listing lines (English and Chinese);
* ``repeated``: one sentence said many times over;
* word salad is the project's own ``SyntheticSource`` (Zipf-drawn words);
* :class:`NearDupFlood` wraps any source and, after its first ``after``
  documents, turns it into a flood of spam, mostly exact copies and light
  edits of a few templates: what a forum looks like when a spam wave hits.

All are ResumableSources for ``streams.sources.runner`` and deterministic:
document ``i`` depends only on the seed and ``i`` (no state grows with the
stream), so a resumed read regenerates exactly what a straight read would.
Every document carries ``meta.synthetic = True`` and ``meta.kind``.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from schemas import RawDocument

from .runner import Item

KINDS = ("boilerplate", "repeated")

_NAV = ["Home", "About us", "Contact", "Privacy Policy", "Terms of Service", "Login", "Sign up", "Cart (0)",
        "Search", "Menu", "Back to top", "Subscribe to our newsletter", "Follow us on Twitter", "Share",
        "首页", "关于我们", "联系我们", "隐私政策", "登录", "注册", "返回顶部", "网站地图", "Accept all cookies",
        "We use cookies to improve your experience.", "Skip to main content", "Next page »", "« Previous"]
_TEMPLATES = ["Copyright © {year} {company}. All rights reserved.", "Price: ${price}.99 | Add to cart",
              "版权所有 © {year} {company} 京ICP备{id}号", "Posted on {year}-{mm}-{dd} by admin",
              "{n} comments | {m} views", "Call us: 400-{id}", "Showing results {n}-{m} of {id}"]
_COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "星辰科技", "华夏商城"]
_SUBJECTS = ["The committee", "Our new product", "This weekend's sale", "The weather", "Every customer",
             "The latest update", "Your account", "The city council"]
_VERBS = ["is now available", "has been postponed", "will be announced soon", "keeps getting better",
          "needs your attention", "was a great success"]
_SPAM = ["【限时优惠】{p}只要{price}元！点击链接立即抢购 {url} #{tag}#", "转发抽奖！关注@{p}官方 送{price}元红包 {url}",
         "Hot deal!!! {p} only ${price} today, click {url} now #{tag}"]
_PRODUCTS = ["蓝牙耳机", "扫地机器人", "面膜套装", "smart watch", "手机壳", "保温杯"]


def _fill(rng: random.Random, template: str) -> str:
    return template.format(year=rng.randint(2005, 2025), company=rng.choice(_COMPANIES), n=rng.randint(1, 99),
                           m=rng.randint(100, 999), id=rng.randint(10000, 99999), price=rng.randint(5, 500),
                           mm=rng.randint(1, 12), dd=rng.randint(1, 28))


def boilerplate_text(rng: random.Random) -> str:
    lines = [rng.choice(_NAV) if rng.random() < 0.6 else _fill(rng, rng.choice(_TEMPLATES))
             for _ in range(rng.randint(6, 18))]
    return "\n".join(lines)


def repeated_text(rng: random.Random) -> str:
    sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)}, {_fill(rng, rng.choice(_TEMPLATES))}"
    return rng.choice(["\n", " ", "\n\n"]).join([sentence] * rng.randint(4, 16))


def spam_text(rng: random.Random) -> str:
    return rng.choice(_SPAM).format(p=rng.choice(_PRODUCTS), price=rng.choice([9, 19, 29, 99]),
                                    url=f"http://t.cn/{rng.randint(100, 999)}", tag=rng.choice(["好物", "抢购"]))


class LowValueSource:
    """``n_docs`` documents of one kind (``boilerplate`` or ``repeated``); ``n_docs=None``: no end."""

    def __init__(self, kind: str, *, n_docs: int | None = None, seed: int = 0, source: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown low-value kind {kind!r}; one of {', '.join(KINDS)}")
        self.kind, self.n_docs, self.seed = kind, n_docs, seed
        self.name = source or kind

    def inputs(self) -> list[str]:
        return [f"low-value:{self.kind}:{self.name}:seed={self.seed}:n={self.n_docs}"]

    def size(self, key: str) -> int | None:
        return None

    def document(self, i: int) -> RawDocument:
        rng = random.Random(f"{self.kind}:{self.seed}:{i}")
        text = boilerplate_text(rng) if self.kind == "boilerplate" else repeated_text(rng)
        return RawDocument(id=f"{self.name}:{self.seed}:{i}", text=text, source=self.name, lang="en",
                           meta={"synthetic": True, "kind": self.kind})

    def read(self, key: str, position: Any = None) -> Iterator[Item]:
        i = int((position or {}).get("index", 0))
        while self.n_docs is None or i < self.n_docs:
            doc = self.document(i)
            i += 1
            yield Item(doc, {"index": i}, n_bytes=len(doc.text.encode("utf-8")))


class NearDupFlood:
    """``base``'s first ``after`` documents, then ``flood_docs`` spam documents under the same source
    name (``None``: no end): about two in three are exact copies of one of the 50 flood documents
    before them, the rest new fills of a few templates (near-duplicates of each other)."""

    def __init__(self, base: Any, *, after: int, flood_docs: int | None = None, seed: int = 0,
                 source: str | None = None):
        self.base, self.after, self.flood_docs, self.seed = base, int(after), flood_docs, seed
        self.name = source or base.name

    def inputs(self) -> list[str]:
        return [f"flood:{self.name}:after={self.after}:n={self.flood_docs}:seed={self.seed}"]

    def size(self, key: str) -> int | None:
        return None

    def _fresh(self, j: int) -> str:
        return spam_text(random.Random(f"flood:{self.seed}:{j}"))

    def _copy_of(self, j: int) -> int | None:
        """The earlier flood document that document ``j`` copies (None: ``j`` is a new fill)."""
        rng = random.Random(f"flood-copy:{self.seed}:{j}")
        return j - 1 - rng.randrange(min(50, j)) if j > 0 and rng.random() < 0.65 else None

    def flood_document(self, j: int) -> RawDocument:
        origin, copy = j, self._copy_of(j)
        while copy is not None:  # a copy of a copy is a copy of the original fill
            origin, copy = copy, self._copy_of(copy)
        text = self._fresh(origin)
        copy = origin != j
        return RawDocument(id=f"{self.name}-flood:{self.seed}:{j}", text=text, source=self.name, lang="zh",
                           meta={"synthetic": True, "kind": "flood_copy" if copy else "flood"})

    def _base_items(self, start: int, base_pos: dict[str, Any]) -> Iterator[Item]:
        n = start
        for key in self.base.inputs():
            if key in base_pos.get("done", []):
                continue
            for item in self.base.read(key, base_pos.get("at") if base_pos.get("key") == key else None):
                if n >= self.after:
                    return
                if item.doc is not None:
                    n += 1
                yield Item(item.doc, {"n": n, "base": {"key": key, "at": item.position,
                                                       "done": base_pos.get("done", [])}},
                           kind=item.kind, n_bytes=item.n_bytes)
            base_pos = {"done": [*base_pos.get("done", []), key]}

    def read(self, key: str, position: Any = None) -> Iterator[Item]:
        pos = position or {}
        n = int(pos.get("n", 0))
        if n < self.after:
            for item in self._base_items(n, pos.get("base", {})):
                n = item.position["n"]
                yield item
        j = max(0, n - self.after)  # a base that ends early starts the flood early
        while self.flood_docs is None or j < self.flood_docs:
            doc = self.flood_document(j)
            j += 1
            yield Item(doc, {"n": self.after + j, "base": {"done": ["*"]}}, n_bytes=len(doc.text.encode("utf-8")))
