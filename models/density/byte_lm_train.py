"""The density model's byte-level LM: a causal dilated CNN over bytes with a two-level
softmax (high nibble, then low nibble), trained in torch, written as an ONNX graph by hand
and tried in int8."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from streams.stages import density as D

EMB, CH, KERNEL, DILATIONS = 32, 48, 3, (1, 2, 4, 8)
CHUNK = 128  # bytes per LM training sequence


def chunks(lines: list[str]) -> list[bytes]:
    out = []
    for ln in lines:
        b = ln.encode("utf-8")
        for i in range(0, len(b), CHUNK):
            out.append(b[i : i + CHUNK])
    return out


def make_torch_lm():
    import torch
    from torch import nn

    class ByteCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(257, EMB)
            self.convs = nn.ModuleList(
                nn.Conv1d(EMB if i == 0 else CH, CH, KERNEL, dilation=d) for i, d in enumerate(DILATIONS))
            self.hi = nn.Linear(CH, 16)
            self.hi_emb = nn.Embedding(16, CH)
            self.lo = nn.Linear(CH, 16)

        def hidden(self, x):
            h = self.emb(x).transpose(1, 2)
            for i, (conv, d) in enumerate(zip(self.convs, DILATIONS)):
                r = torch.relu(conv(nn.functional.pad(h, ((KERNEL - 1) * d, 0))))
                h = r if i == 0 else h + r
            return h.transpose(1, 2)

        def forward(self, x, y):
            h = self.hidden(x)
            yh, yl = y // 16, y % 16
            a = torch.log_softmax(self.hi(h), -1).gather(-1, yh.unsqueeze(-1)).squeeze(-1)
            u = torch.relu(h + self.hi_emb(yh))
            b = torch.log_softmax(self.lo(u), -1).gather(-1, yl.unsqueeze(-1)).squeeze(-1)
            return -(a + b)

    return ByteCNN()


def export_onnx(model, path: Path) -> None:
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper as H
    from onnx import numpy_helper as NH

    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    inits, nodes = [], []

    def init(name, arr):
        inits.append(NH.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, ins, outs, **kw):
        nodes.append(H.make_node(op, ins, outs, **kw))
        return outs[0]

    init("emb", sd["emb.weight"])
    cur = node("Transpose", [node("Gather", ["emb", "x"], ["e"])], ["h0"], perm=[0, 2, 1])
    for i, d in enumerate(DILATIONS):
        w, b = init(f"c{i}w", sd[f"convs.{i}.weight"]), init(f"c{i}b", sd[f"convs.{i}.bias"])
        cv = node("Conv", [cur, w, b], [f"cv{i}"], dilations=[d], pads=[(KERNEL - 1) * d, 0], kernel_shape=[KERNEL])
        r = node("Relu", [cv], [f"r{i}"])
        cur = r if i == 0 else node("Add", [cur, r], [f"h{i + 1}"])
    h = node("Transpose", [cur], ["ht"], perm=[0, 2, 1])
    init("sixteen", np.array(16, dtype=np.int64))
    init("ax", np.array([-1], dtype=np.int64))
    yh = node("Div", ["y", "sixteen"], ["yh"])
    yl = node("Mod", ["y", "sixteen"], ["yl"], fmod=0)
    init("hiw", sd["hi.weight"].T)
    init("hib", sd["hi.bias"])
    lph = node("LogSoftmax", [node("Add", [node("MatMul", [h, "hiw"], ["hm"]), "hib"], ["hl"])], ["lph"], axis=-1)
    a = node("GatherElements", [lph, node("Unsqueeze", [yh, "ax"], ["yhu"])], ["ga"], axis=2)
    init("hiemb", sd["hi_emb.weight"])
    u = node("Relu", [node("Add", [h, node("Gather", ["hiemb", yh], ["he"])], ["hu"])], ["u"])
    init("low", sd["lo.weight"].T)
    init("lob", sd["lo.bias"])
    lpl = node("LogSoftmax", [node("Add", [node("MatMul", [u, "low"], ["lm"]), "lob"], ["ll"])], ["lpl"], axis=-1)
    b = node("GatherElements", [lpl, node("Unsqueeze", [yl, "ax"], ["ylu"])], ["gb"], axis=2)
    s = node("Squeeze", [node("Add", [a, b], ["gab"]), "ax"], ["gs"])
    node("Neg", [s], ["nll"])
    g = H.make_graph(nodes, "foundry_byte_lm",
                     [H.make_tensor_value_info("x", TP.INT64, ["B", "L"]),
                      H.make_tensor_value_info("y", TP.INT64, ["B", "L"])],
                     [H.make_tensor_value_info("nll", TP.FLOAT, ["B", "L"])], inits)
    m = H.make_model(g, opset_imports=[H.make_opsetid("", 17)], producer_name="token-foundry density build")
    m.ir_version = 8
    m.doc_string = (f"byte-level causal CNN LM emb={EMB} ch={CH} k={KERNEL} dil={list(DILATIONS)}; "
                    "inputs x=[BOS]+bytes[:-1], y=bytes; output nll (nats) per position")
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def train_lm(lines: list[str], epochs: int, threads: int, log, *, seed: int) -> object:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    data = chunks(lines)
    rng = np.random.default_rng(seed)
    model = make_torch_lm()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    n_batches = math.ceil(len(data) / 64) * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=n_batches, pct_start=0.1)
    lens = np.array([len(c) for c in data])
    t0 = time.time()
    step = 0
    for ep in range(epochs):
        perm = rng.permutation(len(data))
        # length-bucketed batches of 64
        blocks = [perm[i : i + 64 * 32] for i in range(0, len(perm), 64 * 32)]
        batches = []
        for blk in blocks:
            blk = blk[np.argsort(lens[blk], kind="stable")]
            batches += [blk[i : i + 64] for i in range(0, len(blk), 64)]
        rng.shuffle(batches)
        tot = cnt = 0.0
        for bi in batches:
            x, y, m = _batch(data, bi)
            xt, yt, mt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)
            nll = model(xt, yt)
            loss = (nll * mt).sum() / mt.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tot += loss.item() * float(mt.sum())
            cnt += float(mt.sum())
            if step % 200 == 0:
                log(f"  lm step {step}/{n_batches} bits/byte {tot / cnt / math.log(2):.3f} ({time.time() - t0:.0f}s)")
        log(f"  lm epoch {ep}: train bits/byte {tot / cnt / math.log(2):.3f} ({time.time() - t0:.0f}s)")
    model.eval()
    return model


def _batch(data: list[bytes], idx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [data[i] for i in idx]
    width = max(len(r) for r in rows)
    x = np.zeros((len(rows), width), np.int64)
    y = np.zeros((len(rows), width), np.int64)
    m = np.zeros((len(rows), width), np.float32)
    for j, r in enumerate(rows):
        a = np.frombuffer(r, np.uint8)
        y[j, : len(a)] = a
        x[j, 0] = D.BOS
        x[j, 1 : len(a)] = a[:-1]
        m[j, : len(a)] = 1
    return x, y, m


def try_quantize(lm_path: Path, probe: list[str], log) -> dict:
    """int8 dynamic quantization (per channel); report agreement and speed, keep fp32 unless int8 wins."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q_path = lm_path.with_suffix(".int8.onnx")
    try:
        quantize_dynamic(str(lm_path), str(q_path), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["Conv", "MatMul"])
    except Exception as exc:  # pragma: no cover - depends on the onnxruntime version
        return {"error": str(exc)[:300]}
    res = {}
    speeds = {}
    vals = {}
    for name, path in (("fp32", lm_path), ("int8", q_path)):
        lm = D.ByteLM(path, intra_op_num_threads=1)
        lm.line_bpb(probe)
        t0 = time.perf_counter()
        for _ in range(3):
            vals[name] = lm.line_bpb(probe)
        dt = (time.perf_counter() - t0) / 3
        speeds[name] = sum(len(p.encode()[:CHUNK]) for p in probe) / dt / 1e3
    res["kB_per_s_1thread"] = {k: round(v, 1) for k, v in speeds.items()}
    res["max_abs_bpb_diff"] = float(np.abs(vals["fp32"] - vals["int8"]).max())
    res["int8_bytes"] = q_path.stat().st_size
    res["kept"] = "int8" if speeds["int8"] > 1.1 * speeds["fp32"] and res["max_abs_bpb_diff"] < 0.1 else "fp32"
    if res["kept"] == "int8":
        os.replace(q_path, lm_path)
    else:
        q_path.unlink()
    log(f"quantization: {res}")
    return res
