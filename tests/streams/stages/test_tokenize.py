import pytest

from schemas import CuratedDocument
from streams.sources.synthetic import SyntheticConfig, SyntheticSource
from streams.stages.tokenize import SentencePieceTokenizer
from streams.stages.tokenizer_training import train_tokenizer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    texts = [d.text for d in SyntheticSource(SyntheticConfig(n_docs=400, seed=3))]
    return train_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=800, max_mb=0.5)


def test_training_is_deterministic_and_versioned(model, tmp_path):
    texts = [d.text for d in SyntheticSource(SyntheticConfig(n_docs=400, seed=3))]
    again = train_tokenizer(texts, tmp_path, vocab_size=800, max_mb=0.5)
    assert again.name == model.name and again.read_bytes() == model.read_bytes()


def test_batch_tokenize_roundtrips_and_byte_fallback(model):
    tok = SentencePieceTokenizer(model)
    texts = ["the data model", "中国的语言模型", "emoji 🦜 and ünïcödé never seen"]
    docs = [CuratedDocument(id=str(i), text=t, source="s", content_hash="0" * 32, recipe_version="r")
            for i, t in enumerate(texts)]
    out = tok.process_batch(docs)
    for doc, text in zip(out, texts):
        assert doc.tokenizer_version == tok.version and doc.n_tokens > 0
        assert tok.sp.decode(doc.tokens.tolist()) == text  # byte fallback: nothing is lost
