"""GPU forward pass vs the numpy forward pass on the same synthetic weights of a real Gemma 3 shape.

    python bench/check_forward.py --size 270m --weights q8_0 --tokens 300 --out result.json

Runs a prompt (crossing a 256-row prefill chunk) through the GPU engine and compares the
logits at checked positions with runtime.reference.forward on the exact dequantized weights,
then decodes a few tokens one step at a time and compares those logits too.  Exit 1 on a
mismatch.  Used on the GPU machine, where the real model file cannot travel.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from gemforge.runtime.kernels import Kernels
from gemforge.runtime.model import Engine
from gemforge.runtime.reference import forward
from gemforge.runtime.synthetic import SyntheticStore
from gemforge.runtime.vulkan import Device


class _Cached:
    """fp32 weights dequantized once (the reference reads each many times)."""

    def __init__(self, store):
        self.store, self.cache = store, {}

    def fp32(self, name):
        if name not in self.cache:
            self.cache[name] = self.store.fp32(name)
        return self.cache[name]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="270m")
    ap.add_argument("--weights", default="q8_0")
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--decode", type=int, default=4)
    ap.add_argument("--tol", type=float, default=2e-3, help="max |gpu - numpy| / max |numpy| per position")
    ap.add_argument("--portable-matmul", action="store_true", help="never the cooperative-matrix matmul")
    ap.add_argument("--norms", default="auto", help="decode folds of the norms (Engine.set_folds; bench --norms)")
    ap.add_argument("--geglu", default="auto", help="decode folds of the GeGLU (Engine.set_folds; bench --geglu)")
    ap.add_argument("--decode-dot", default="auto", help="Kernels.decode_dot: auto | int8 | float (bench --decode-dot)")
    ap.add_argument("--out")
    a = ap.parse_args()
    store = SyntheticStore(a.size, a.weights, seed=1)
    cfg = store.config
    dev = Device()
    kern = Kernels(dev)
    kern.portable_only = a.portable_matmul
    kern.decode_dot = a.decode_dot
    eng = Engine(dev, kern, store, context=a.tokens + a.decode + 8)
    folds = eng.set_folds(a.norms, a.geglu)
    rng = np.random.default_rng(7)
    ids = [cfg.bos_id] + rng.integers(3, cfg.vocab, a.tokens - 1).tolist()
    pos = sorted(p for p in set(range(0, a.tokens, 37)) | {255, 256, a.tokens - 1} if p < a.tokens)
    t = time.perf_counter()
    gpu = eng.all_logits(ids, pos)
    t_gpu = time.perf_counter() - t
    # decode steps: feed the GPU's argmax, read full logits each step
    dec_ids, dec_logits = [], []
    tok = int(gpu[-1].argmax())
    for _ in range(a.decode):
        dec_ids.append(tok)
        eng.decode(tok, "logits")
        dec_logits.append(eng.read_logits())
        tok = int(dec_logits[-1].argmax())
    t = time.perf_counter()
    ref = forward(_Cached(store), cfg, ids + dec_ids)
    t_ref = time.perf_counter() - t
    rows = {"prefill": (gpu, ref[pos]), "decode": (np.stack(dec_logits), ref[a.tokens:a.tokens + a.decode])}
    report = {"size": a.size, "weights": a.weights, "tokens": a.tokens, "device": dev.info.describe(),
              "gpu_s": t_gpu, "numpy_s": t_ref, "checked_positions": pos, "tol": a.tol,
              "prefill_matmul": kern.prefill_matmul(a.weights),
              "prefill_attention": kern.attention_choice(cfg.head_dim)[1],
              "decode_norms": folds[0], "decode_geglu": folds[1], "decode_qk": eng.decode_qk,
              "decode_products": kern.matvec_choice(a.weights)[1]}
    ok = True
    for kind, (g, r) in rows.items():
        err = np.abs(g - r).max(axis=1) / np.abs(r).max(axis=1)
        agree = float(np.mean(g.argmax(axis=1) == r.argmax(axis=1)))
        report[kind] = {"max_rel_err": float(err.max()), "argmax_agreement": agree}
        ok &= bool(err.max() <= a.tol)
    report["ok"] = ok
    print(json.dumps(report, indent=1))
    if a.out:
        open(a.out, "w").write(json.dumps(report, indent=1))
    dev.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
