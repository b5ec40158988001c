"""Per-shape timings of `linear`: GPU time, read bandwidth and FLOP rate for every matrix of a model.

  python3 bench/linear_probe.py --model 27b --weights q4_0,q8_0            # decode (T = 1, and geglu-fused down)
  python3 bench/linear_probe.py --model 4b --weights q8_0 --T 256 [--portable-matmul]   # prefill products

Times each [N, K] weight of the model (synthetic values: speed depends on shape and format) with
GPU timestamps over --reps back-to-back dispatches, after --warm-ms of the same calls; prints and writes JSON.
--decode-dot picks the T = 1 kernel for q8_0/q4_0 (integer dot product or fp32 x).
--candidates also times, on every shape, each tuning candidate of that kernel found in the build
(`gemforge kernels --tune-candidates matvec_dot:out=plain`, ...) and prints the fastest few: whether
one layout serves every shape or shapes would pick different ones.

  python3 bench/linear_probe.py --model 4b --weights q8_0 --candidates --reps 5

Each timing follows --warm-ms of the same calls and keeps the fastest of three submits: without
that, on the H200 (driver 580) a call timed after the host had worked (pipeline creation, uploads)
ran at low clocks, up to 7x slower, and candidates timed later looked faster.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from gemforge.runtime.config import model_config
from gemforge.runtime.errors import GemforgeError
from gemforge.runtime.kernels import Kernels, upload_packed_weight
from gemforge.runtime.synthetic import random_packed
from gemforge.runtime.tune_cli import matvec_shapes
from gemforge.runtime.vulkan import Device
from probe_io import write_rows


def _warm(dev, k, rng, seconds: float) -> None:
    """Matrix-vector products for ``seconds`` (clocks up, caches and pipelines warm)."""
    import time
    N, K = 16384, 4096
    W = upload_packed_weight(dev, random_packed("q8_0", N, K, rng), "q8_0", N, K, "warm-up")
    x, y = dev.upload(rng.standard_normal(K).astype(np.float32)), dev.buffer(4 * N)
    rec = dev.record(label="warm-up")
    for _ in range(200):
        k.linear(rec, W, x, y, 1)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        rec.submit()
    rec.destroy()
    for p in W.parts:
        p.buffer.destroy()


def _candidates(dev, k, op, fmt, W, x, y, T, a, name, tuned_s) -> list[dict]:
    """Times of every built tuning candidate of ``op`` on W (plain product); prints the fastest three."""
    axes = {"matvec_dot": {"format": fmt, "out": "plain"}, "matvec": {"format": fmt, "input": "plain", "out": "plain"},
            "matmul_coop": {"format": fmt, "bucket": k.bucket(fmt, T) if T > 1 else 0},
            "matmul": {"format": fmt, "bucket": k.bucket(fmt, T) if T > 1 else 0}}[op]
    cands = [art for art in k.manifest.artifacts.values()
             if art.op == op and art.axes == axes and art.tuning_key.startswith("tune-")]
    if not cands:
        print(f"  no {op} candidates for {axes} in the build: run `gemforge kernels --tune-candidates {op}:...`",
              file=sys.stderr)
        return []
    out = []
    try:
        for art in cands:
            try:
                k.pin(art)
            except GemforgeError as e:        # a resource limit of this device: not a usable point
                print(f"  {art.name}: dropped ({e})", file=sys.stderr)
                continue
            t = dev.time_call(lambda rec: k.linear(rec, W, x, y, T), a.reps, "probe",
                              warm_s=a.warm_ms / 1e3, rounds=3)
            out.append({"model": a.model, "format": fmt, "matrix": name, "T": T, "N": W.N, "K": W.K,
                        "kernel": op, "candidate": art.tuning_key, "us": 1e6 * t, "GB_s": W.nbytes / t / 1e9})
    finally:
        k.unpin(op, **axes)
    out.sort(key=lambda r: r["us"])
    best = "; ".join(f"{r['candidate'][5:]} {r['us']:.1f} us" for r in out[:3])
    print(f"  {name} {W.N}x{W.K}: tuned {1e6 * tuned_s:.1f} us; fastest of {len(out)}: {best}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="27b")
    ap.add_argument("--weights", default="q4_0,q8_0")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--T", type=int, default=1, help="rows of x (1: matvec; up to 256: the prefill matmul)")
    ap.add_argument("--portable-matmul", action="store_true")
    ap.add_argument("--split-groups", type=int, help="Kernels.SPLIT_K_GROUPS (split K until this many workgroups)")
    ap.add_argument("--split-min", type=int, help="Kernels.SPLIT_K_MIN (the least K per split)")
    ap.add_argument("--split-max", type=int, help="Kernels.SPLIT_K_MAX (the most K one workgroup walks)")
    ap.add_argument("--decode-dot", default="auto", choices=["auto", "int8", "float"],
                    help="T = 1 products of q8_0/q4_0: integer dot product on int8 x, or fp32 x (Kernels.decode_dot)")
    ap.add_argument("--part-mb", type=int, help="split every weight into row parts of at most this many MB")
    ap.add_argument("--only", help="time only these matrices (comma-separated: qkv,o,gate_up,down,head)")
    ap.add_argument("--shapes", help="time these [N, K] instead of the model's matrices: 43008x5376,262144x5376")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="seconds of matrix-vector work before timing "
                    "(a fresh GPU runs its first work slower)")
    ap.add_argument("--warm-ms", type=float, default=30.0,
                    help="milliseconds of each timed call before timing it (an idle GPU starts at low clocks)")
    ap.add_argument("--candidates", action="store_true",
                    help="also time every tuning candidate of the shape's kernel in the build (plain products)")
    ap.add_argument("--out")
    a = ap.parse_args()
    dev = Device()
    k = Kernels(dev)
    k.portable_only = a.portable_matmul
    k.decode_dot = a.decode_dot
    if a.split_groups:
        k.SPLIT_K_GROUPS = a.split_groups
    if a.split_min:
        k.SPLIT_K_MIN = a.split_min
    if a.split_max:
        k.SPLIT_K_MAX = a.split_max
    T = a.T
    cfg = model_config(a.model)
    rng = np.random.default_rng(0)
    rows = []
    names = ["qkv", "o", "gate_up", "down", "head"]
    shapes = list(zip(names, matvec_shapes(cfg)))
    if a.shapes:
        shapes = [(s, (int(s.split("x")[0]), int(s.split("x")[1]), 1)) for s in a.shapes.split(",")]
    if a.warmup_s > 0:
        _warm(dev, k, rng, a.warmup_s)
    for fmt in a.weights.split(","):
        for name, (N, K, times) in shapes:
            if (T > 1 and name == "head") or (a.only and name not in a.only.split(",")):
                continue
            W = upload_packed_weight(dev, random_packed(fmt, N, K, rng), fmt, N, K, name,
                                     max_part_bytes=a.part_mb << 20 if a.part_mb else None)
            x = dev.upload(rng.standard_normal(2 * K * T).astype(np.float32))
            y = dev.buffer(4 * N * T)
            res = {}
            kernel = k.matmul_choice(fmt, 256)[0] if T > 1 else k.matvec_choice(fmt)[0]
            for act in ([None, "geglu"] if name == "down" and T == 1 else [None]):
                res[act or "plain"] = dev.time_call(   # steady state per call (a call may be split K + its sum)
                    lambda rec: k.linear(rec, W, x, y, 1, act=act) if act else k.linear(rec, W, x, y, T),
                    a.reps, "probe", warm_s=a.warm_ms / 1e3, rounds=3)
            if a.candidates:
                rows.extend(_candidates(dev, k, kernel, fmt, W, x, y, T, a, name, res["plain"]))
            for act, t in res.items():
                tflops = 2 * T * N * K / t / 1e12
                row = {"model": a.model, "format": fmt, "matrix": name, "act": act, "T": T, "N": N, "K": K,
                       "parts": len(W.parts),
                       "kernel": kernel, "bytes": W.nbytes, "us": 1e6 * t, "GB_s": W.nbytes / t / 1e9,
                       "TFLOP_s": tflops, "per_token": times}
                rows.append(row)
                print(f"{a.model} {fmt:5} {kernel:11} {name:8} {act:6} T={T:<3} {N:6}x{K:<6} {W.nbytes / 1e6:8.1f} MB "
                      f"{1e6 * t:9.1f} us {W.nbytes / t / 1e9:6.0f} GB/s {tflops:6.1f} TFLOP/s", flush=True)
            for p in W.parts:
                p.buffer.destroy()
    if a.out:
        write_rows(a.out, dev, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
