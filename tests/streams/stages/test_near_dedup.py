"""MinHash-LSH near-duplicate removal: known near-duplicate pairs of the shared
data are caught (recall), random distinct documents of the same files are not
(precision), Chinese uses character shingles, the rejection names the kept
document, and the per-partition state survives snapshot / restore exactly."""
from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections import Counter

import pytest

from schemas import CuratedDocument, Reason, Rejection
from streams.stages.near_dedup import NearDedup, jaccard, shingle_hashes, shingles
from streams.stages.registry import build_stage, operator_names
from tests.conftest import shared_data

EN = ("The city council voted on Tuesday to extend the bus network into the northern suburbs, after a "
      "two-year study found that most residents there drive to work because no route reaches them. "
      "The first new lines are expected to open next spring, and fares will stay the same for a year.")
EN_EDIT = EN.replace("Tuesday", "Wednesday").replace("next spring", "next summer")
EN_OTHER = ("A small bakery in the old town has started selling bread made from a wheat variety that was "
            "almost forgotten, and customers now queue before dawn to buy the dark, heavy loaves it bakes.")
ZH = ("研究人员在论文中指出，这种新型电池在低温环境下仍能保持百分之八十以上的容量，明显优于目前市场上的同类产品。"
      "他们计划明年与汽车厂商合作开展道路测试，并希望在三年内实现量产。")
ZH_EDIT = ZH.replace("明年", "今年年底").replace("三年", "五年")


def doc(text: str, i: int | str = 0) -> CuratedDocument:
    return CuratedDocument(id=str(i), text=text, source="test", recipe_version="r1",
                           content_hash=hashlib.sha256(text.encode()).hexdigest())


def test_registered_and_parameters():
    assert "near_dedup" in operator_names()
    st = build_stage({"op": "near_dedup", "threshold": 0.8, "num_perm": 64})
    assert st.threshold == 0.8 and st.num_perm == 64
    assert st.bands * st.rows <= 64
    with pytest.raises(ValueError):
        build_stage({"op": "near_dedup", "threshold": 1.5})


def test_shingles_words_for_english_characters_for_chinese():
    en = shingles(EN)
    assert all(len(s.split(" ")) == 5 for s in en)
    zh = shingles(ZH)
    assert all(len(s) == 5 for s in zh)
    assert "研究人员在" in zh
    assert shingles("Hi there") == {"hi there"}  # shorter than one shingle: the whole text
    assert shingles("  ...  ") == set()
    assert jaccard(shingles(EN), shingles(EN.upper())) == 1.0  # case and punctuation do not matter


def test_shingle_hashes_are_the_shingle_set():
    # The signature path hashes substrings instead of building shingle strings: it must
    # see the same set, for both kinds of shingles and the short-text cases.
    for text in (EN, EN_EDIT, ZH, ZH_EDIT, EN + " " + EN, "Hi there", "研究人员", "one two three four five six"):
        sh, hv = shingles(text), shingle_hashes(text)
        assert len(hv) == len(sh), text
        edited = shingle_hashes(text + " extra words at the very end, for sure")
        assert len(set(hv.tolist()) & set(edited.tolist())) == len(sh & shingles(text + " extra words at the very end, for sure"))
    assert len(shingle_hashes("  ...  ")) == 0
    assert shingle_hashes(EN).tolist() == shingle_hashes(EN.upper()).tolist()


def test_near_duplicate_rejected_with_kept_id_and_score():
    st = NearDedup()
    out = st.process_batch([doc(EN, "a"), doc(EN_OTHER, "b"), doc(EN_EDIT, "c"), doc(ZH, "d"), doc(ZH_EDIT, "e")])
    kinds = [type(o).__name__ for o in out]
    assert kinds == ["CuratedDocument", "CuratedDocument", "Rejection", "CuratedDocument", "Rejection"]
    assert out[2].reason == Reason.NEAR_DUPLICATE.value and out[2].duplicate_of == "a"
    assert 0.5 <= out[2].score < 1.0
    assert out[4].duplicate_of == "d"
    assert out[1].scores["near_dup_max_jaccard"] < 0.5
    assert len(st) == 3


def test_threshold_is_respected():
    strict = NearDedup(threshold=0.95)
    out = strict.process_batch([doc(EN, "a"), doc(EN_EDIT, "c")])
    assert all(isinstance(o, CuratedDocument) for o in out)


def test_deterministic_and_replay_keeps_kept_documents():
    docs = [doc(EN, "a"), doc(EN_EDIT, "c"), doc(ZH, "d"), doc(ZH_EDIT, "e"), doc(EN_OTHER, "b")]
    a = NearDedup().process_batch([doc(d.text, d.id) for d in docs])
    st = NearDedup()
    b = st.process_batch([doc(d.text, d.id) for d in docs])
    assert [o.to_dict() for o in a] == [o.to_dict() for o in b]
    # the same batch again (a replay after a crash): same verdicts
    c = st.process_batch([doc(d.text, d.id) for d in docs])
    assert [type(o) for o in b] == [type(o) for o in c]
    assert [getattr(o, "duplicate_of", None) for o in b] == [getattr(o, "duplicate_of", None) for o in c]


def test_snapshot_restore_round_trip():
    first = [doc(EN, "a"), doc(ZH, "d"), doc(EN_OTHER, "b")]
    later = [doc(EN_EDIT, "c"), doc(ZH_EDIT, "e"), doc("A completely different text about rivers and boats " * 3, "f")]
    st = NearDedup()
    st.process_batch(first)
    blob = st.snapshot()
    assert isinstance(blob, bytes) and len(blob) < 4096 + 3 * 128 * 8
    fresh = NearDedup()
    fresh.restore(blob)
    assert fresh.snapshot() == blob
    a = st.process_batch([doc(d.text, d.id) for d in later])
    b = fresh.process_batch([doc(d.text, d.id) for d in later])
    assert [o.to_dict() for o in a] == [o.to_dict() for o in b]
    assert [getattr(o, "duplicate_of", None) for o in a] == ["a", "d", None]
    with pytest.raises(ValueError):
        NearDedup(threshold=0.8).restore(blob)  # other parameters: refuse
    with pytest.raises(ValueError):
        NearDedup().restore(b"garbage")
    empty = NearDedup()
    empty.restore(NearDedup().snapshot())
    assert len(empty) == 0


def test_bounded_index_drops_oldest_first():
    st = NearDedup(max_entries=2)
    st.process_batch([doc(EN, "a"), doc(ZH, "d"), doc(EN_OTHER, "b")])
    assert len(st) == 2
    out = st.process_batch([doc(ZH_EDIT, "e"), doc(EN_EDIT, "c")])
    assert isinstance(out[0], Rejection) and out[0].duplicate_of == "d"
    assert isinstance(out[1], CuratedDocument)  # "a" was evicted
    restored = NearDedup(max_entries=2)
    restored.restore(st.snapshot())
    assert len(restored) == 2


# ------------------------------------------------------------------ real data: recall and precision


def _read(name: str):
    with gzip.open(shared_data() / name, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def pairs():
    return _read("near_dups.jsonl.gz")


def _pair_verdict(st: NearDedup, a_id, a_text, b_id, b_text) -> Rejection | CuratedDocument:
    st._reset()
    st.process(doc(a_text, a_id))
    return st.process(doc(b_text, b_id + "#b"))


def test_recall_on_known_near_duplicate_pairs(pairs, capsys):
    st = NearDedup()
    hits = Counter()
    total = Counter()
    for p in pairs:
        out = _pair_verdict(st, p["a_id"], p["a_text"], p["b_id"], p["b_text"])
        hit = isinstance(out, Rejection) and out.duplicate_of == p["a_id"]
        for key in ("all", p["relation"]):
            total[key] += 1
            hits[key] += hit
    recall = {k: round(hits[k] / total[k], 3) for k in total}
    with capsys.disabled():
        print(f"\nnear_dedup recall (threshold {st.threshold}, {st.num_perm} perms, b={st.bands} r={st.rows}):",
              recall, dict(total))
    assert recall["exact"] == 1.0
    assert recall["near"] >= 0.85
    assert recall["all"] >= 0.9


def test_precision_on_random_distinct_documents(pairs, capsys):
    known = {p["a_id"] for p in pairs} | {p["b_id"] for p in pairs}
    rng = random.Random(7)
    st = NearDedup()
    fp = n = 0
    for name in ("web_cc_text", "web_extracted_text", "zh_wiki_paragraphs", "zh_en_codeswitch", "zh_reviews"):
        recs = [r for r in _read(f"{name}.jsonl.gz") if r["id"] not in known]
        by_lang: dict[str, list] = {}
        for r in recs:
            by_lang.setdefault(r["lang"], []).append(r)
        langs = [lang for lang, rs in by_lang.items() if len(rs) >= 50]
        for _ in range(250):
            a, b = rng.sample(by_lang[rng.choice(langs)], 2)
            if jaccard(shingles(a["text"]), shingles(b["text"])) >= 0.3:
                continue  # a real near-duplicate pair that the list does not name (templates, reposts)
            n += 1
            fp += isinstance(_pair_verdict(st, a["id"], a["text"], b["id"], b["text"]), Rejection)
    with capsys.disabled():
        print(f"\nnear_dedup negatives: {n} random same-file same-language pairs, {fp} false positives "
              f"(precision against them {1 - fp / n:.3f})")
    assert fp <= n * 0.002


def test_stream_rejections_are_real_near_duplicates():
    recs = _read("web_extracted_text.jsonl.gz")
    texts = {r["id"]: r["text"] for r in recs}
    st = NearDedup()
    out = st.process_batch([doc(r["text"], r["id"]) for r in recs])
    rejected = [o for o in out if isinstance(o, Rejection)]
    assert 10 <= len(rejected) <= 60
    for o in rejected:
        assert jaccard(shingles(texts[o.id]), shingles(texts[o.duplicate_of])) >= 0.4, o.id


def test_band_index_finds_the_candidates_datasketch_finds():
    """BandIndex replaces MinHashLSH: the same bands, so the same candidate sets,
    also after removals."""
    import numpy as np
    from datasketch import MinHash, MinHashLSH

    from streams.stages.near_dedup import BandIndex

    rng = np.random.default_rng(5)
    bands, rows, num_perm = 30, 4, 128
    base = rng.integers(0, 1 << 63, size=(20, num_perm), dtype=np.uint64)
    # Variants share some whole bands with their base signature, so there are real collisions.
    sigs = []
    for i in range(200):
        s = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)
        src = base[i % 20]
        for b in rng.choice(bands, size=int(rng.integers(0, 3)), replace=False):
            s[b * rows:(b + 1) * rows] = src[b * rows:(b + 1) * rows]
        sigs.append(s)
    perms = MinHash(num_perm=num_perm, seed=1, scheme="affine64").permutations
    lsh = MinHashLSH(threshold=0.5, num_perm=num_perm, params=(bands, rows))
    index = BandIndex(bands, rows)

    def mh(s):
        return MinHash(seed=1, scheme="affine64", hashvalues=s, permutations=perms)

    for i, s in enumerate(sigs):
        assert index.query(index.band_keys(s)) == set(lsh.query(mh(s)))
        lsh.insert(str(i), mh(s))
        index.insert(str(i), index.band_keys(s))
        if i % 7 == 6:  # drop an older one
            lsh.remove(str(i - 5))
            index.remove(str(i - 5), index.band_keys(sigs[i - 5]))
    hits = [len(index.query(index.band_keys(b))) for b in base]
    assert sum(hits) > 0
