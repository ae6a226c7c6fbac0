"""A seeded generator of English, Chinese and code-switched documents.

Text comes from small built-in vocabularies drawn with a Zipf-like law, so it
has the token statistics of language without being language; its purpose is
load, not meaning. Exact duplicates are injected at a configured rate (a
duplicate repeats an earlier document's text under a new id), so dedup has
something to find. Near duplicates (an earlier text with a few words or
characters edited) and boilerplate (navigation, cookie and copyright lines
around a text, or a page that is nothing else) come at their own rates from
a second random stream, so a config with those rates at 0 generates exactly
what it did before they existed. Same seed, same corpus.

Every document is marked: ``meta.synthetic = True`` and ``meta.kind`` one of
``original``, ``exact_dup``, ``near_dup``, ``boilerplate``, ``boilerplate_only``
(``duplicate_of`` names the id a duplicate copies). It is also a
ResumableSource (position ``{"index": i}``) for ``foundry generate``.

Samples from the trainer's model are the separate ``ModelSampleSource``
(``streams/sources/model_samples.py``; ``foundry generate --checkpoint``).
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from schemas import RawDocument

from .runner import Item

_EN = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so no will more can out up into other some "
    "time only new these two may first then do any like my now over such our man me even most made after also "
    "did many before must through back years where much your way well down should because each just those "
    "people how too little state good very make world still own see men work long get here between both life "
    "being under never day same another know while last might us great old year off come since against go came "
    "right used take three data model stream token shard kafka partition training corpus language text network "
    "river city music history science market energy water school family garden winter summer morning engine"
).split()
_ZH = list(
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定"
    "行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些"
    "然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公"
    "无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将"
    "组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金"
)
_ZH_PUNCT = "，，，。、；"
_BOILER_HEAD = (
    "Home | About us | Products | Blog | Contact", "Skip to main content", "Menu  Search  Sign in  Register",
    "首页 | 关于我们 | 产品中心 | 新闻动态 | 联系我们", "您当前的位置：首页 > 新闻中心 > 正文",
    "We use cookies to improve your experience. By continuing you accept our cookie policy. Accept",
)
_BOILER_TAIL = (
    "Copyright © 2024 All rights reserved.", "Share this: Facebook Twitter LinkedIn Email",
    "Privacy Policy | Terms of Use | Sitemap", "Related posts: Previous post Next post",
    "版权所有 © 2024 保留所有权利 京ICP备12345678号", "分享到：微信 微博 QQ空间", "上一篇 下一篇 相关文章 热门推荐",
    "Subscribe to our newsletter to get the latest updates.",
)


@dataclass
class SyntheticConfig:
    n_docs: int = 1000
    seed: int = 0
    dup_rate: float = 0.05  # share of documents that repeat an earlier text exactly
    mix: tuple[float, float, float] = (0.5, 0.3, 0.2)  # english, chinese, code-switched
    min_sentences: int = 3
    max_sentences: int = 25
    # 0 by default so that existing callers get exactly the corpus they always got;
    # `foundry generate` turns them on (0.03 and 0.05).
    near_dup_rate: float = 0.0  # share of documents that are an earlier text with small edits
    near_dup_edit: float = 0.08  # share of words (characters for Chinese) edited in a near duplicate
    boilerplate_rate: float = 0.0  # share of documents wrapped in (or made of) boilerplate lines
    boilerplate_only_share: float = 0.2  # of those, the share that is nothing but boilerplate


class SyntheticSource:
    def __init__(self, config: SyntheticConfig = SyntheticConfig(), source: str = "synthetic"):
        self.config = config
        self.source = source

    # -- ResumableSource
    @property
    def name(self) -> str:
        return self.source

    def inputs(self) -> list[str]:
        spec = json.dumps(asdict(self.config), sort_keys=True)
        digest = hashlib.sha1(spec.encode()).hexdigest()[:12]
        return [f"synthetic:{self.source}:seed={self.config.seed}:n={self.config.n_docs}:{digest}"]

    def size(self, key: str) -> int | None:
        return None

    def read(self, key: str, position: Any = None) -> Iterator[Item]:
        start = int((position or {}).get("index", 0))
        for i, doc in enumerate(self):  # regenerated from the seed; documents before the resume point are skipped
            if i >= start:
                yield Item(doc, {"index": i + 1}, n_bytes=len(doc.text.encode("utf-8")))

    def _near_dup(self, aux: random.Random, text: str) -> str:
        if " " in text.strip():
            words = text.split(" ")
            for _ in range(max(1, int(len(words) * self.config.near_dup_edit))):
                k = aux.randrange(len(words))
                op = aux.random()
                if op < 0.4:
                    words[k] = self._zipf_pick(aux, _EN)
                elif op < 0.7 and len(words) > 2:
                    del words[k]
                else:
                    words.insert(k, self._zipf_pick(aux, _EN))
            return " ".join(words)
        chars = list(text)
        for _ in range(max(1, int(len(chars) * self.config.near_dup_edit))):
            k = aux.randrange(len(chars))
            chars[k] = self._zipf_pick(aux, _ZH)
        return "".join(chars)

    def _boilerplate(self, aux: random.Random, text: str | None) -> str:
        head = aux.sample(_BOILER_HEAD, aux.randint(1, 3))
        tail = aux.sample(_BOILER_TAIL, aux.randint(1, 4))
        body = [text] if text is not None else []
        return "\n".join(head + body + tail)

    def _zipf_pick(self, rng: random.Random, vocab: list[str]) -> str:
        # Inverse-CDF sample of a truncated Zipf(1) law via the exponential trick.
        n = len(vocab)
        idx = int(n ** rng.random()) - 1
        return vocab[min(max(idx, 0), n - 1)]

    def _en_sentence(self, rng: random.Random) -> str:
        words = [self._zipf_pick(rng, _EN) for _ in range(rng.randint(6, 20))]
        return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"])

    def _zh_sentence(self, rng: random.Random) -> str:
        chars = []
        for _ in range(rng.randint(10, 30)):
            chars.append(self._zipf_pick(rng, _ZH))
            if rng.random() < 0.08:
                chars.append(rng.choice(_ZH_PUNCT[:3]))
        return "".join(chars) + "。"

    def _mixed_sentence(self, rng: random.Random) -> str:
        parts = []
        for _ in range(rng.randint(3, 7)):
            if rng.random() < 0.6:
                parts.append("".join(self._zipf_pick(rng, _ZH) for _ in range(rng.randint(2, 8))))
            else:
                parts.append(" " + " ".join(self._zipf_pick(rng, _EN) for _ in range(rng.randint(1, 3))) + " ")
        return "".join(parts).strip() + "。"

    def __iter__(self) -> Iterator[RawDocument]:
        cfg = self.config
        rng = random.Random(cfg.seed)
        aux = random.Random(f"{cfg.seed}:aux")  # near duplicates and boilerplate: their own stream
        texts: list[str] = []
        origin: list[tuple[int, str | None]] = []  # document index and lang of each entry of texts
        kinds = (("en", self._en_sentence, " "), ("zh", self._zh_sentence, ""), ("zh-en", self._mixed_sentence, ""))
        for i in range(cfg.n_docs):
            doc_id = f"{self.source}:{cfg.seed}:{i}"
            if texts and cfg.near_dup_rate > 0 and aux.random() < cfg.near_dup_rate:
                j = aux.randrange(len(texts))
                src_i, lang = origin[j]
                yield RawDocument(id=doc_id, text=self._near_dup(aux, texts[j]), source=self.source, lang=lang,
                                  meta={"synthetic": True, "kind": "near_dup",
                                        "duplicate_of": f"{self.source}:{cfg.seed}:{src_i}"})
                continue
            if texts and rng.random() < cfg.dup_rate:
                j = rng.randrange(len(texts))
                src_i, _lang = origin[j]
                yield RawDocument(id=doc_id, text=texts[j], source=self.source,
                                  meta={"synthetic": True, "kind": "exact_dup", "duplicate_of_index": j,
                                        "duplicate_of": f"{self.source}:{cfg.seed}:{src_i}"})
                continue
            lang, make, sep = rng.choices(kinds, weights=cfg.mix)[0]
            n = rng.randint(cfg.min_sentences, cfg.max_sentences)
            text = sep.join(make(rng) for _ in range(n))
            kind = "original"
            if cfg.boilerplate_rate > 0 and aux.random() < cfg.boilerplate_rate:
                only = aux.random() < cfg.boilerplate_only_share
                text = self._boilerplate(aux, None if only else text)
                kind = "boilerplate_only" if only else "boilerplate"
            texts.append(text)  # duplicates repeat the document as published
            origin.append((i, lang))
            yield RawDocument(id=doc_id, text=text, source=self.source, lang=lang,
                              meta={"synthetic": True, "kind": kind})
