"""Attention per layer: GPU time of every attention variant in the build (the default, the device's
tuned one and any `--tune-candidates` candidates) at a model's head shapes, for a global layer
(cache = the context) and a sliding one (cache = window + 256).

  gemforge kernels --tune-candidates attention:mode=decode      # where glslc is: the candidates
  python3 bench/attention_probe.py --model 270m,27b --pos 600 [--out results.json]

--prefill T: prefill attention of T rows at position --pos (pp512's second chunk: --prefill 256
--pos 256), on the portable kernel and every attention_coop variant (with
`--tune-candidates attention_coop`), each with the runtime's split count.

Random q and caches (speed does not depend on values); the split count is the runtime's own choice
for the shape (Kernels.attention with splits=None), so the merge pass is timed with it.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from gemforge.runtime.config import model_config
from gemforge.runtime.kernels import Kernels
from gemforge.runtime.vulkan import Device
from probe_io import write_rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="270m,27b")
    ap.add_argument("--pos", type=int, default=600, help="tokens in the cache (pp512 then decoding: ~512..640)")
    ap.add_argument("--context", type=int, default=8192, help="the global layers' cache length")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--prefill", type=int, default=0, help="time prefill attention of this many rows instead")
    ap.add_argument("--out")
    a = ap.parse_args()
    dev = Device()
    k = Kernels(dev)
    rng = np.random.default_rng(0)
    rows = []
    for model in a.model.split(","):
        cfg = model_config(model)
        Hq, Hkv, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        n_global = sum(cfg.is_global(i) for i in range(cfg.layers))
        T = max(1, a.prefill)
        q = dev.upload(rng.standard_normal(T * Hq * D).astype(np.float32))
        out = dev.buffer(4 * T * Hq * D)
        ctrl = dev.buffer(64, "ctrl", host=True)
        ctrl.write(np.array([a.pos], np.uint32))
        layers = {"global": (min(a.context, cfg.context), 0), "local": (cfg.window + 256, cfg.window)}
        caches = {kind: [dev.upload(rng.standard_normal(C * Hkv * D).astype(np.float32)) for _ in range(2)]
                  for kind, (C, _) in layers.items()}
        if a.prefill:
            rows += prefill_rows(a, dev, k, model, cfg, q, out, ctrl, layers, caches, n_global)
            continue
        arts = [x for x in k.manifest.artifacts.values()
                if x.op == "attention" and x.axes == {"mode": "decode", "head_dim": D}]
        seen = set()
        for art in arts:
            key = (art.values["wg_size"], art.values["decode_keys"], art.values["decode_rows"])
            if key in seen:        # candidates differing only in prefill params are the same decode kernel
                continue
            seen.add(key)
            k.pin(art)
            res = {}
            for kind, (C, window) in layers.items():
                kc, vc = caches[kind]
                res[kind] = 1e6 * dev.time_call(
                    lambda rec: k.attention(rec, q, kc, vc, out, ctrl, 1, Hq, Hkv, D, C, window, D ** -0.5),
                    a.reps, "attention probe")
            k.unpin("attention", mode="decode", head_dim=D)
            rows.append({"model": model, "kernel": art.name, "wg_size": key[0], "decode_keys": key[1],
                         "decode_rows": key[2], "pos": a.pos, "global_us": round(res["global"], 2),
                         "local_us": round(res["local"], 2),
                         "us_per_token": round(res["global"] * n_global + res["local"] * (cfg.layers - n_global), 1)})
            print(f"{model:5s} {art.name:70s} global {res['global']:7.2f} us  local {res['local']:7.2f} us  "
                  f"per token {rows[-1]['us_per_token']:8.1f} us", file=sys.stderr)
    if a.out:
        write_rows(a.out, dev, rows)
    dev.close()
    return 0


def prefill_rows(a, dev, k, model, cfg, q, out, ctrl, layers, caches, n_global) -> list[dict]:
    """Prefill attention of a.prefill rows: the portable kernel, then every attention_coop variant."""
    Hq, Hkv, D, T = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, a.prefill
    coop = [x for x in k.manifest.artifacts.values() if x.op == "attention_coop" and x.axes == {"head_dim": D}]
    op, why = k.attention_choice(D)
    if op != "attention_coop":
        print(f"{model}: {why}", file=sys.stderr)
        coop = []
    rows = []
    for art in [None] + coop:
        k.portable_attention = art is None
        if art is not None:
            k.pin(art)
        res = {}
        for kind, (C, window) in layers.items():
            kc, vc = caches[kind]
            res[kind] = 1e6 * dev.time_call(
                lambda rec: k.attention(rec, q, kc, vc, out, ctrl, T, Hq, Hkv, D, C, window, D ** -0.5),
                a.reps, "attention prefill probe")
        name = "attention_prefill (portable)" if art is None else art.name
        if art is not None:
            k.unpin("attention_coop", head_dim=D)
        rows.append({"model": model, "kernel": name, "T": T, "pos": a.pos,
                     "params": {} if art is None else {p: art.values[p] for p in ("rows", "keys", "subgroups",
                                                                                 "split_groups")},
                     "global_us": round(res["global"], 2), "local_us": round(res["local"], 2),
                     "us_per_chunk": round(res["global"] * n_global + res["local"] * (cfg.layers - n_global), 1)})
        print(f"{model:5s} {name:70s} {str(rows[-1]['params']):70s} global {res['global']:8.2f} us  "
              f"local {res['local']:8.2f} us  per chunk {rows[-1]['us_per_chunk']:9.1f} us", file=sys.stderr)
    k.portable_attention = False
    return rows


if __name__ == "__main__":
    sys.exit(main())
