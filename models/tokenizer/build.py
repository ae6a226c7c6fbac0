"""Train the project's SentencePiece tokenizer, reproducibly.

    .venv/bin/python models/tokenizer/build.py           # writes foundry-sp32k-v1.model here
    .venv/bin/python models/tokenizer/build.py --model-type unigram --vocab-size 24000 \
        --sample-percent 15 --out /tmp/trial             # a quick trial (writes /tmp/trial.model)

Input: the Chinese, English and code-switched documents of five files in the
shared data folder (``$FOUNDRY_SHARED_DATA``, else ``shared/data`` beside the
repository), read in a fixed order. About 10 % of every file (chosen by a hash
of file name and document id, so the split never moves) is held out for
evaluation and never trained on; ``bench/tokenizer.py`` measures on exactly
that part (it imports ``iter_documents`` from here). Training sentences are
the distinct lines of the training documents; lines of English documents are
repeated ``--en-weight`` times because English is the smaller part.

Determinism: the input order is fixed, every training line is used
(``input_sentence_size=0``: no random sampling), the random generator seed and
``num_threads`` are fixed, and the temporary input path is removed from the
stored trainer settings, so the same sentencepiece version gives a
byte-identical model (``bench``/tests compare the SHA-256 in CARD.md).
The settings and the trials that chose them are in CARD.md.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_DATA = Path(os.environ.get("FOUNDRY_SHARED_DATA", ROOT.parent / "shared" / "data"))
MODEL_NAME = "foundry-sp32k-v1"

# (file, languages taken from it). The order is part of the recipe.
SOURCES: list[tuple[str, frozenset[str]]] = [
    ("zh_wiki_paragraphs", frozenset({"zh"})),
    ("zh_reviews", frozenset({"zh"})),
    ("zh_en_codeswitch", frozenset({"zh-en", "en-zh"})),
    ("web_cc_text", frozenset({"en", "zh"})),
    ("web_extracted_text", frozenset({"en", "zh"})),
]

HELD_OUT_PERCENT = 10
SEED = 20240601
NUM_THREADS = 2
MAX_LINE_CHARS = 4000
EN_WEIGHT = 6  # longer lines are cut at a space (or hard) into chunks

# Settings chosen from the trials recorded in CARD.md.
DEFAULTS = dict(
    model_type="bpe",
    vocab_size=32000,
    character_coverage=0.9999,
    normalization="identity",
    split_digits=False,
    split_by_script=False,
    add_dummy_prefix=False,
)


def _bucket(*parts: str) -> int:
    h = hashlib.sha1("\x00".join(parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") % 100


def held_out(file: str, doc_id: str) -> bool:
    """True for the documents kept out of training (about 10 % of each file)."""
    return _bucket(file, doc_id) < HELD_OUT_PERCENT


def iter_documents(data_dir: Path = DEFAULT_DATA, *, split: str = "train") -> Iterator[tuple[str, dict]]:
    """Yield ``(file, record)`` for the tokenizer's languages, in the fixed order.

    ``split`` is ``train``, ``heldout`` or ``all``.
    """
    for name, langs in SOURCES:
        path = Path(data_dir) / f"{name}.jsonl.gz"
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if rec.get("lang") not in langs or not rec.get("text"):
                    continue
                ho = held_out(name, rec["id"])
                if split == "all" or (split == "heldout") == ho:
                    yield name, rec


def _chunks(line: str) -> Iterator[str]:
    while len(line) > MAX_LINE_CHARS:
        cut = line.rfind(" ", MAX_LINE_CHARS // 2, MAX_LINE_CHARS)
        if cut <= 0:
            cut = MAX_LINE_CHARS
        yield line[:cut]
        line = line[cut:]
    if line:
        yield line


def training_lines(data_dir: Path = DEFAULT_DATA, sample_percent: int = 100,
                   en_weight: int = 1) -> Iterator[tuple[str, int]]:
    """The training sentences with their repeat count: lines of the training
    documents, first occurrence of each distinct line only (boilerplate and
    repeated reviews count once); lines of English documents are repeated
    ``en_weight`` times, because English is the smaller part of the corpus."""
    seen: set[bytes] = set()
    for _name, rec in iter_documents(data_dir, split="train"):
        weight = en_weight if rec["lang"] == "en" else 1
        for raw in rec["text"].split("\n"):
            line = raw.rstrip()
            if not line.strip():
                continue
            key = hashlib.blake2b(line.encode("utf-8"), digest_size=12).digest()
            if key in seen:
                continue
            seen.add(key)
            if sample_percent < 100 and _bucket("sample", line) >= sample_percent:
                continue
            for chunk in _chunks(line):
                yield chunk, weight


def _strip_paths(model: Path) -> None:
    """The model records its trainer settings, including the (temporary) input
    path and the output prefix: replace those, so that the bytes depend only on
    the data and the settings."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(model.read_bytes())
    del proto.trainer_spec.input[:]
    proto.trainer_spec.input.append("corpus.txt")
    proto.trainer_spec.model_prefix = MODEL_NAME
    model.write_bytes(proto.SerializeToString())


def train(out_prefix: Path, *, model_type: str, vocab_size: int, character_coverage: float,
          normalization: str, data_dir: Path = DEFAULT_DATA, sample_percent: int = 100,
          num_threads: int = NUM_THREADS, split_digits: bool = False, add_dummy_prefix: bool = False,
          en_weight: int = EN_WEIGHT, split_by_script: bool = False) -> dict:
    import sentencepiece as spm

    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        n_lines = n_bytes = 0
        with corpus.open("w", encoding="utf-8") as fh:
            for line, weight in training_lines(data_dir, sample_percent, en_weight):
                for _ in range(weight):
                    fh.write(line + "\n")
                    n_lines += 1
                    n_bytes += len(line.encode("utf-8")) + 1
        spm.set_random_generator_seed(SEED)
        t0 = time.perf_counter()
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(out_prefix),
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            normalization_rule_name=normalization,
            byte_fallback=True,
            split_digits=split_digits,
            split_by_unicode_script=split_by_script,
            split_by_whitespace=True,
            allow_whitespace_only_pieces=True,
            remove_extra_whitespaces=False,  # lossless: decode(encode(x)) == x
            add_dummy_prefix=add_dummy_prefix,
            user_defined_symbols=["\n", "\n\n"],
            max_sentencepiece_length=16,
            max_sentence_length=16384,
            input_sentence_size=0,  # use every line: no random sampling
            shuffle_input_sentence=False,
            num_threads=num_threads,
            unk_id=0, bos_id=1, eos_id=2, pad_id=3,
            unk_surface="\u2047",
            minloglevel=2,
        )
        seconds = time.perf_counter() - t0
    _strip_paths(Path(f"{out_prefix}.model"))
    return {"lines": n_lines, "mbytes": round(n_bytes / 1e6, 2), "train_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=HERE / MODEL_NAME, help="model prefix (writes PREFIX.model)")
    ap.add_argument("--model-type", default=DEFAULTS["model_type"], choices=["unigram", "bpe"])
    ap.add_argument("--vocab-size", type=int, default=DEFAULTS["vocab_size"])
    ap.add_argument("--character-coverage", type=float, default=DEFAULTS["character_coverage"])
    ap.add_argument("--normalization", default=DEFAULTS["normalization"],
                    choices=["identity", "nmt_nfkc", "nfkc"])
    ap.add_argument("--split-digits", action=argparse.BooleanOptionalAction, default=DEFAULTS["split_digits"])
    ap.add_argument("--sample-percent", type=int, default=100,
                    help="train on this share of the distinct lines (quick trials)")
    ap.add_argument("--num-threads", type=int, default=NUM_THREADS)
    ap.add_argument("--en-weight", type=int, default=EN_WEIGHT,
                    help="repeat each English training line this many times")
    ap.add_argument("--dummy-prefix", action=argparse.BooleanOptionalAction, default=DEFAULTS["add_dummy_prefix"],
                    help="add_dummy_prefix")
    ap.add_argument("--split-by-script", action=argparse.BooleanOptionalAction, default=DEFAULTS["split_by_script"],
                    help="split_by_unicode_script")
    args = ap.parse_args(argv)
    if not (args.data / "zh_wiki_paragraphs.jsonl.gz").exists():
        print(f"data folder {args.data} not found", file=sys.stderr)
        return 2
    info = train(args.out, model_type=args.model_type, vocab_size=args.vocab_size,
                 character_coverage=args.character_coverage, normalization=args.normalization,
                 data_dir=args.data, sample_percent=args.sample_percent, num_threads=args.num_threads,
                 split_digits=args.split_digits, add_dummy_prefix=args.dummy_prefix,
                 en_weight=args.en_weight, split_by_script=args.split_by_script)
    model = Path(f"{args.out}.model")
    (args.out.parent / (args.out.name + ".vocab")).unlink(missing_ok=True)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    print(json.dumps({"model": str(model), "sha256": sha, "bytes": model.stat().st_size, **info}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
