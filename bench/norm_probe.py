"""Decode RMSNorm (one row, the fused add_norm of every sub-block) with the row shared by 1..N workgroups.

  python3 bench/norm_probe.py --L 640,2560,3840,5376 --slices 1,4,16 [--out results.json]

GPU time per call from timestamps over --reps back-to-back dispatches, after a warm-up submit.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from gemforge.runtime.kernels import Kernels
from gemforge.runtime.vulkan import Device
from probe_io import write_rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--L", default="640,2560,3840,5376", help="row lengths (the models' hidden sizes)")
    ap.add_argument("--slices", default="1,4,8,16", help="workgroups per row to compare")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--out")
    a = ap.parse_args()
    dev = Device()
    k = Kernels(dev)
    rng = np.random.default_rng(0)
    rows = []
    for L in (int(v) for v in a.L.split(",")):
        bufs = [dev.upload(rng.standard_normal(L).astype(np.float32)) for _ in range(4)]
        y, z = dev.buffer(4 * L), dev.buffer(4 * L)
        for n in (int(v) for v in a.slices.split(",")):
            k.SLICE_L, k.MAX_SLICES = max(1, -(-L // n)), n      # exactly n slices
            t = dev.time_call(lambda rec: k.rmsnorm(rec, bufs[0], bufs[1], y, 1, L, 1e-6, residual=bufs[2],
                                                    w2=bufs[3], z=z), a.reps, "norm probe")
            rows.append({"L": L, "slices": k.norm_slices(1, L), "us": round(1e6 * t, 2)})
            print(f"add_norm L={L:5d} slices={rows[-1]['slices']:2d}: {1e6 * t:7.2f} us", file=sys.stderr)
    if a.out:
        write_rows(a.out, dev, rows)
    dev.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
