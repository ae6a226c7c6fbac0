"""The toxicity cascade's second model: a character CNN over hashed code points, trained in
torch and exported as a hand-written ONNX graph."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from streams.stages import toxicity as T

ENC_EMB, ENC_CH = 32, 64


def make_encoder():
    import torch
    from torch import nn

    class CharCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(T.ENC_VOCAB + 1, ENC_EMB, padding_idx=0)
            self.c1 = nn.Conv1d(ENC_EMB, ENC_CH, 3, padding=1)
            self.c2 = nn.Conv1d(ENC_CH, ENC_CH, 3, padding=2, dilation=2)
            self.out = nn.Linear(2 * ENC_CH, 1)

        def forward(self, x):
            m = (x > 0).float().unsqueeze(1)
            h1 = torch.relu(self.c1(self.emb(x).transpose(1, 2))) * m
            h2 = h1 + torch.relu(self.c2(h1)) * m
            mx = h2.max(2).values  # h2 >= 0 and padding is 0, so padding never wins
            mean = h2.sum(2) / m.sum(2)
            return self.out(torch.cat([mx, mean], 1)).squeeze(1)

    return CharCNN()


def train_encoder(texts: list[str], labels: np.ndarray, epochs: int, log, *, seed: int):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    model = make_encoder()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = epochs * ((len(texts) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps + 10, pct_start=0.1)
    y = torch.tensor(labels, dtype=torch.float32)
    lens = np.array([len(t) for t in texts])
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = rng.permutation(len(texts))
        batches = []
        for s in range(0, len(perm), 64 * 32):
            blk = perm[s : s + 64 * 32]
            blk = blk[np.argsort(lens[blk], kind="stable")]
            batches += [blk[i : i + 64] for i in range(0, len(blk), 64)]
        rng.shuffle(batches)
        tot = 0.0
        for bi in batches:
            x = torch.from_numpy(T.encode_chars([texts[i] for i in bi]))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y[bi])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(bi)
        log(f"  encoder epoch {ep}: loss {tot / len(texts):.4f} ({time.time() - t0:.0f}s)")
    model.eval()
    return model


def export_encoder(model, path: Path) -> None:
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper as H
    from onnx import numpy_helper as NH

    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    inits = [NH.from_array(sd["emb.weight"], "emb"),
             NH.from_array(sd["c1.weight"], "c1w"), NH.from_array(sd["c1.bias"], "c1b"),
             NH.from_array(sd["c2.weight"], "c2w"), NH.from_array(sd["c2.bias"], "c2b"),
             NH.from_array(np.ascontiguousarray(sd["out.weight"].T), "ow"), NH.from_array(sd["out.bias"], "ob"),
             NH.from_array(np.array(0, np.int64), "zero_i"), NH.from_array(np.array([1], np.int64), "ax1"),
             NH.from_array(np.array([2], np.int64), "ax2")]
    n = H.make_node
    nodes = [
        n("Greater", ["x", "zero_i"], ["mb"]), n("Cast", ["mb"], ["mf"], to=TP.FLOAT),
        n("Unsqueeze", ["mf", "ax1"], ["m"]),
        n("Gather", ["emb", "x"], ["e"]), n("Transpose", ["e"], ["et"], perm=[0, 2, 1]),
        n("Conv", ["et", "c1w", "c1b"], ["c1"], kernel_shape=[3], pads=[1, 1]), n("Relu", ["c1"], ["r1"]),
        n("Mul", ["r1", "m"], ["h1"]),
        n("Conv", ["h1", "c2w", "c2b"], ["c2"], kernel_shape=[3], pads=[2, 2], dilations=[2]),
        n("Relu", ["c2"], ["r2"]), n("Mul", ["r2", "m"], ["r2m"]), n("Add", ["h1", "r2m"], ["h2"]),
        n("ReduceMax", ["h2", "ax2"], ["mx"], keepdims=0),
        n("ReduceSum", ["h2", "ax2"], ["sm"], keepdims=0), n("ReduceSum", ["m", "ax2"], ["cnt"], keepdims=0),
        n("Div", ["sm", "cnt"], ["mean"]), n("Concat", ["mx", "mean"], ["pool"], axis=1),
        n("MatMul", ["pool", "ow"], ["o"]), n("Add", ["o", "ob"], ["ob2"]),
        n("Squeeze", ["ob2", "ax1"], ["logit"]), n("Sigmoid", ["logit"], ["prob"]),
    ]
    g = H.make_graph(nodes, "foundry_toxicity_encoder", [H.make_tensor_value_info("x", TP.INT64, ["B", "L"])],
                     [H.make_tensor_value_info("logit", TP.FLOAT, ["B"]),
                      H.make_tensor_value_info("prob", TP.FLOAT, ["B"])], inits)
    m = H.make_model(g, opset_imports=[H.make_opsetid("", 18)], producer_name="token-foundry toxicity build")
    m.ir_version = 9
    m.doc_string = f"char CNN emb={ENC_EMB} ch={ENC_CH}, code points mod {T.ENC_VOCAB} + 1"
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
