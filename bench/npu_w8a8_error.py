"""How far the NPU's W8A8 arithmetic is from fp32, measured on the real Gemma 3 270M weights.

W8A8 here is exactly what the NPU designs compute (gen/npu/layout.py: int8 weights per output channel,
int8 activations per token, int32 accumulation, y = float(acc) * s_x * s_w in fp32); tests/npu/test_emulate.py
proves the generated designs' schedule equals it bit for bit.  This script swaps it in for every matrix
product of the numpy fp32 reference forward pass (q, k, v, o, gate, up, down and the logits), and reports

* per matrix, on the fp32 model's own activations: relative error ||y_w8a8 - y|| / ||y||;
* end to end: the logits' error, top-1 agreement at every position, and a greedy continuation; and, for
  comparison, the same for int8 weights with fp32 activations (w8a32) and for q8_0 weights (the Vulkan default).

The fp32 reference is runtime/reference/forward.py on the GGUF's weights dequantized to fp32.  Nothing runs
on an NPU.  Usage:  python bench/npu_w8a8_error.py [--out bench/results/npu_w8a8_270m.json] [--tokens 20]
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from gemforge.gen.npu import layout
ref = importlib.import_module("gemforge.runtime.reference.forward")   # the module (the package re-exports forward())

PROMPTS = [
    "The capital of France is",
    "Photosynthesis is the process by which green plants use sunlight to make food from carbon dioxide and water.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Dear hiring manager, I am writing to apply for the position of data engineer at your company, which I saw",
]
MATRICES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "logits")


def exact_float(K: int):
    """A float type in which every partial sum of K int8 x int8 products is an exact integer."""
    return np.float32 if K * 127 * 128 < 2**24 else np.float64


def int8_product(xq: np.ndarray, wq: np.ndarray) -> np.ndarray:
    """x_q @ w_q^T exactly, through BLAS (see exact_float); ``wq`` may already be in that float type."""
    ft = exact_float(xq.shape[1])
    return (xq.astype(ft) @ wq.astype(ft, copy=False).T).astype(np.int32)


class W8A8:
    """Stands for one weight matrix in the reference: ``x @ W.T`` becomes the W8A8 product (mode "w8a8"),
    stays fp32 while recording the W8A8 error ("fp32"), or uses q8_0 weights with fp32 activations ("q8_0",
    the Vulkan default, for comparison)."""

    __array_ufunc__ = None     # numpy defers `x @ self` to __rmatmul__

    def __init__(self, w: np.ndarray, kind: str, run):
        self.w, self.kind, self.run = w, kind, run
        if run.mode == "q8_0":
            from gemforge.runtime.formats import quantize_roundtrip
            self.wq8 = quantize_roundtrip(w, "q8_0")
            return
        if run.mode == "w8a32":     # the same int8 weights, activations left in fp32: isolates the weights' share
            q, sw = layout.quantize_rows(w)
            self.wq8 = (q.astype(np.float32) * sw[:, None]).astype(np.float32)
            return
        wq, self.sw = layout.quantize_rows(w)
        self.wq = wq.astype(exact_float(w.shape[1]))     # the int8 values, held as exact floats for BLAS

    @property
    def T(self):
        return self

    def __getitem__(self, idx):            # the embedding lookup stays fp32 (a gather on the iGPU)
        return self.w[idx]

    def __rmatmul__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.run.mode in ("q8_0", "w8a32"):
            return (x @ self.wq8.T).astype(np.float32)
        xq, sx = layout.quantize_rows(x)
        yq = ((int8_product(xq, self.wq).astype(np.float32) * sx[:, None]) * self.sw[None, :]).astype(np.float32)
        if self.run.mode == "w8a8":
            return yq
        y32 = (x @ self.w.T).astype(np.float32)
        self.run.errors.setdefault(self.kind, []).append(
            float(np.linalg.norm(yq - y32) / max(np.linalg.norm(y32), 1e-30)))
        return y32


class Run(ref._Weights):
    """The reference's weight access (a private class of runtime/reference/forward.py), with every matrix
    product routed through ``W8A8`` in ``mode``."""

    def __init__(self, store, mode: str):
        super().__init__(store)
        self.mode, self.errors = mode, {}
        self._wrapped: dict[str, W8A8] = {}

    def __call__(self, name: str):
        kind = "logits" if name == "token_embd.weight" else name.split(".")[-2] if name.startswith("blk.") else None
        if kind not in MATRICES:
            return super().__call__(name)
        if name not in self._wrapped:
            self._wrapped[name] = W8A8(super().__call__(name), kind, self)
        return self._wrapped[name]


def greedy(W: Run, cfg, ids: list[int], n: int) -> list[int]:
    cache = ref.KVCache()
    logits = ref.forward(W, cfg, ids, cache, rows=slice(-1, None))
    out = [int(np.argmax(logits[-1]))]
    while len(out) < n:
        out.append(int(np.argmax(ref.forward(W, cfg, [out[-1]], cache)[-1])))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="GGUF (default: the 270M Q4_K_M package)")
    ap.add_argument("--out", default=None, help="write the JSON report here")
    ap.add_argument("--tokens", type=int, default=20, help="greedy tokens to compare (default 20)")
    args = ap.parse_args(argv)
    from gemforge.runtime.gguf_loader import load_weights
    from gemforge.runtime.model_store import default_model_path
    from gemforge.runtime.tokenizer import load_tokenizer
    t0 = time.perf_counter()
    path = Path(args.model) if args.model else default_model_path()
    store = load_weights(path, "f32")
    cfg = store.config
    tok = load_tokenizer(path)
    # sanity: the fast exact product equals numpy's int8 product (int64) on real data
    wq, _ = layout.quantize_rows(store.fp32("blk.0.ffn_down.weight")[:64])
    xq, _ = layout.quantize_rows(np.random.default_rng(0).standard_normal((3, cfg.ffn)).astype(np.float32))
    assert np.array_equal(int8_product(xq, wq), layout.int8_matmul(xq, wq))

    fp32 = Run(store, "fp32")
    runs = {"w8a8": Run(store, "w8a8"), "w8a32": Run(store, "w8a32"), "q8_0": Run(store, "q8_0")}
    stats = {m: {"prompts": [], "agree": 0, "kl": []} for m in runs}
    total = 0
    for text in PROMPTS:
        ids = tok.encode(text)
        a = ref.forward(fp32, cfg, ids)
        total += len(ids)
        la = a - a.max(-1, keepdims=True)
        la -= np.log(np.exp(la).sum(-1, keepdims=True))
        for mode, run in runs.items():
            b = ref.forward(run, cfg, ids)
            d = np.abs(b - a)
            lb = b - b.max(-1, keepdims=True)
            lb -= np.log(np.exp(lb).sum(-1, keepdims=True))
            st = stats[mode]
            st["kl"] += list((np.exp(la) * (la - lb)).sum(-1))
            st["agree"] += int((a.argmax(-1) == b.argmax(-1)).sum())
            st["prompts"].append({"tokens": len(ids), "max_abs_logit_error": float(d.max()),
                                  "max_abs_logit": float(np.abs(a).max()),
                                  "rms_logit_error": float(np.sqrt((d ** 2).mean())),
                                  "last_top1_fp32": int(a[-1].argmax()), "last_top1": int(b[-1].argmax())})
    logits = {mode: {"prompts": st["prompts"], "positions": total, "top1_agreement": st["agree"] / total,
                     "mean_kl_from_fp32": float(np.mean(st["kl"])), "max_kl_from_fp32": float(np.max(st["kl"]))}
              for mode, st in stats.items()}
    ids = tok.encode(PROMPTS[0])
    g32, g8 = greedy(fp32, cfg, ids, args.tokens), greedy(runs["w8a8"], cfg, ids, args.tokens)
    same = next((i for i, (p, q) in enumerate(zip(g32, g8)) if p != q), len(g32))
    per_matrix = {k: {"median_rel_error": float(np.median(v)), "max_rel_error": float(np.max(v)), "products": len(v)}
                  for k, v in fp32.errors.items()}
    report = {
        "what": "W8A8 (int8 per-channel weights, int8 per-token activations, int32 accumulation, fp32 out: the "
                "NPU designs' arithmetic) vs fp32, every matrix product of Gemma 3 270M including the logits",
        "model": cfg.name, "gguf": path.name,
        "reference": "numpy fp32 forward (runtime/reference/forward.py) on the GGUF weights dequantized to fp32",
        "w8a8": "gen/npu/layout.py (proven equal to the generated schedule by tests/npu/test_emulate.py)",
        "ran_on": "CPU (numpy); nothing ran on an NPU",
        "per_matrix_on_fp32_activations": per_matrix,
        "logits_w8a8": logits["w8a8"],
        "logits_w8a32_for_comparison": logits["w8a32"] | {
            "what": "the same int8 per-channel weights with fp32 activations: the activations' int8 share is the rest"},
        "logits_q8_0_for_comparison": logits["q8_0"] | {
            "what": "q8_0 weights (32-value blocks, fp16 scales) with fp32 activations: the Vulkan default"},
        "greedy": {"prompt": PROMPTS[0], "tokens": args.tokens, "identical_prefix": same,
                   "fp32": tok.decode(g32), "w8a8": tok.decode(g8)},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
