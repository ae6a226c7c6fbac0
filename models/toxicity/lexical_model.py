"""The toxicity cascade's first model: hashed character n-grams -> mean bucket weight + bias.
Trained in torch, exported as a hand-written ONNX graph (float or int8 table). The density
build reuses it as its boilerplate model."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from streams.stages import toxicity as T


def train_lexical(texts: list[str], labels: np.ndarray, epochs: int, log, *, seed: int):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    W = torch.zeros(1 << T.BITS, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=0.05)
    y = torch.tensor(labels, dtype=torch.float32)
    t0 = time.time()
    for ep in range(epochs):
        perm = rng.permutation(len(texts))
        tot = 0.0
        for s in range(0, len(perm), 256):
            bi = perm[s : s + 256]
            ids, seg, inv = T.hash_ngrams([texts[i] for i in bi])
            g = W[torch.from_numpy(ids)].sum(0)
            sums = torch.zeros(len(bi)).index_add(0, torch.from_numpy(seg), g)
            logit = sums * torch.from_numpy(inv) + b
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y[bi])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(bi)
        log(f"  lexical epoch {ep}: loss {tot / len(texts):.4f} ({time.time() - t0:.0f}s)")
    return W.detach().numpy().astype(np.float32), float(b.detach()[0])


def export_lexical(W: np.ndarray, bias: float, path: Path, int8: bool) -> dict:
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper as H
    from onnx import numpy_helper as NH

    inits, nodes = [], []
    info = {}
    if int8:
        scale = float(np.abs(W).max() / 127.0)
        q = np.clip(np.round(W / scale), -127, 127).astype(np.int8)
        inits += [NH.from_array(q, "wq"), NH.from_array(np.array(scale, np.float32), "wscale"),
                  NH.from_array(np.array(0, np.int8), "wzero")]
        nodes += [H.make_node("Gather", ["wq", "ids"], ["gq"]),
                  H.make_node("DequantizeLinear", ["gq", "wscale", "wzero"], ["g"])]
        info = {"scale": scale}
    else:
        inits.append(NH.from_array(W, "w"))
        nodes.append(H.make_node("Gather", ["w", "ids"], ["g"]))
    inits += [NH.from_array(np.array([0], np.int64), "ax0"), NH.from_array(np.array([bias], np.float32), "bias")]
    nodes += [
        H.make_node("ReduceSum", ["g", "ax0"], ["gp"], keepdims=0),  # [L]: sum over n-gram orders
        H.make_node("Mul", ["inv_len", "zero"], ["zeros"]),
        H.make_node("ScatterElements", ["zeros", "seg", "gp"], ["sums"], axis=0, reduction="add"),
        H.make_node("Mul", ["sums", "inv_len"], ["mean"]),
        H.make_node("Add", ["mean", "bias"], ["logit"]),
        H.make_node("Sigmoid", ["logit"], ["prob"]),
    ]
    inits.append(NH.from_array(np.array(0.0, np.float32), "zero"))
    g = H.make_graph(nodes, "foundry_toxicity_lexical",
                     [H.make_tensor_value_info("ids", TP.INT64, [T.NMAX, "L"]),
                      H.make_tensor_value_info("seg", TP.INT64, ["L"]),
                      H.make_tensor_value_info("inv_len", TP.FLOAT, ["B"])],
                     [H.make_tensor_value_info("logit", TP.FLOAT, ["B"]),
                      H.make_tensor_value_info("prob", TP.FLOAT, ["B"])], inits)
    m = H.make_model(g, opset_imports=[H.make_opsetid("", 18)], producer_name="token-foundry toxicity build")
    m.ir_version = 9
    m.doc_string = (f"hashed char 1..{T.NMAX}-grams, 2^{T.BITS} buckets, mean weight + bias; "
                    f"{'int8 table' if int8 else 'float table'}")
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return info
