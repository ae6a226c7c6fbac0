"""ONNX export of the language model (read by the model-samples source), and atomic checkpoint files."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import torch

from trainer.checkpoint import CheckpointStore
from trainer.config import ModelConfig
from trainer.export import export_onnx, read_latest
from trainer.loop import Trainer
from trainer.model import GPT
from trainer.shard_feed import ListShardFeed
from trainer.value_publisher import MemoryValuePublisher


def test_onnx_export_loads_in_onnxruntime_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=24), 101).eval()
    path = export_onnx(model, tmp_path, "runA-s000000010", meta={"tokenizer_version": "t1", "vocab_size": 100})
    latest = read_latest(tmp_path)
    assert latest["path"] == str(path) and latest["model_version"] == "runA-s000000010"
    assert latest["boundary_token"] == 100 and latest["block_size"] == 24 and latest["vocab_size"] == 100
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 5), (4, 24)]:  # dynamic batch and length
        tokens = torch.randint(0, 101, shape)
        got = sess.run(["logits"], {"tokens": tokens.numpy()})[0]
        with torch.no_grad():
            want = model(tokens).numpy()
        assert got.shape == (*shape, 101)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    # a second export is a new version; the pointer moves; no temporary file is left
    path2 = export_onnx(model, tmp_path, "runA-s000000020", meta={})
    assert path2 != path and path.exists() and read_latest(tmp_path)["path"] == str(path2)
    assert not list(tmp_path.glob(".*"))


def test_trainer_exports_every_m_steps(tmp_path, make_shards, trainer_config):
    ms = make_shards(n_shards=4)
    cfg = trainer_config(export={"every": 10}, checkpoint={"every": 0})
    Trainer(cfg, tmp_path / "run", ListShardFeed(ms), MemoryValuePublisher(), max_steps=20).run()
    files = sorted(p.name for p in (tmp_path / "run" / "export").glob("lm-*.onnx"))
    assert [f.rsplit("-s", 1)[1] for f in files] == ["000000010.onnx", "000000020.onnx"]
    latest = json.loads((tmp_path / "run" / "export" / "latest.json").read_text())
    assert latest["step"] == 20 and latest["tokenizer_version"] == "tok-test"


def test_checkpoint_files_are_atomic_and_a_damaged_newest_one_is_skipped(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (10, 20, 30):
        store.save(step, {"x": torch.tensor([step])}, healthy=step != 30)
    assert store.steps() == [20, 30]  # keep=2; 10 went
    assert store.good_step() == 20
    (tmp_path / ".ckpt-000000040.pt.abc.tmp").write_bytes(b"half a file")  # a kill during a save
    store.path_for(40).write_bytes(b"not a checkpoint")  # a damaged file under the final name
    assert store.load_latest()["step"] == 30
    store.save(50, {"x": torch.tensor([50])}, healthy=True)
    assert not list(tmp_path.glob(".*.tmp"))
    assert store.load_good()["step"] == 50
