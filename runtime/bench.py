"""`gemforge bench`: prefill and decode tokens per second, per-kernel GPU time, bandwidth.

Measures the way llama-bench does (pp = one prompt of N tokens into an empty cache;
tg = N single-token steps from an empty cache), after a warm-up of real work (a fresh
GPU may still be at its idle clock).  Reports medians and spread over repetitions,
per-kernel GPU time of one decode step and one prefill chunk from timestamp queries,
the weight bytes read per decoded token, and the device's read bandwidth measured
by gemforge's own Vulkan kernel in the same run.  Writes JSON under bench/results/.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .cli import register

EXAMPLES = """examples:
  gemforge bench --synthetic 270m --weights q8_0
  gemforge bench --synthetic 27b --weights q4_0 --prompt-tokens 512 --gen-tokens 128 --reps 3
  gemforge bench --model ~/.cache/gemforge/models/gemma-3-270m-Q4_K_M.gguf --weights f16"""


def _git_rev() -> str:
    """The checkout's commit, '-dirty' when tracked files differ from it (a copied tree whose .git is older
    than its files says so rather than naming a commit it does not hold)."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
        return out or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def read_bandwidth(device, kernels, nbytes: int = 1 << 30, reps: int = 5) -> float:
    """Bytes per second that the device reads with gemforge's readbw kernel (median of reps)."""
    nbytes = min(nbytes, device.info.max_buffer_bytes // 16 * 16)
    src = device.buffer(nbytes, "bw_src")
    groups = 4096
    prog = kernels.program("readbw")
    dst = device.buffer(groups * 64 * 4, "bw_dst")
    rec = device.record(timestamps=True, label="readbw")
    rec.dispatch(prog, {"src": src, "dst": dst}, {"n_vec4": nbytes // 16}, (groups, 1, 1))
    times = []
    for _ in range(reps + 1):
        rec.submit()
        times.append(rec.times()[0][1])
    rec.destroy()
    src.destroy()
    dst.destroy()
    return nbytes / statistics.median(times[1:])


def _profile(rec, labels: bool = False) -> dict[str, float]:
    """GPU seconds per kernel (with ``labels``: per kernel and matrix, for the products), summed over the
    step's dispatches, largest first."""
    agg: dict[str, float] = defaultdict(float)
    for name, t in rec.times(labels):
        agg[name] += t
    return dict(sorted(agg.items(), key=lambda kv: -kv[1]))


def _by_matrix(rec, engine, T: int) -> dict[str, dict]:
    """{label: {ms, and GB/s of weights read (T = 1) or TFLOP/s (T rows)}} of the products of a timed
    recording, per matrix label (summed over the layers; a weight in several parts has a dispatch each)."""
    mats = {f"[{w.N}x{w.K}]": w for w in [engine.embed] + [w for L in engine.layers
                                                           for w in (L.wqkv, L.wo, L.w_gate_up, L.w_down)]}
    uses = Counter(rec.labels)
    out = {}
    for label, t in _profile(rec, labels=True).items():
        w = mats.get(label[label.rindex("["):]) if label.endswith("]") else None
        if w is None:
            continue
        n = uses[label] / len(w.parts)
        rate = ({"GB_s": w.nbytes * n / t / 1e9} if T == 1 else {"TFLOP_s": 2 * T * w.N * w.K * n / t / 1e12})
        out[label] = {"ms": round(1e3 * t, 4), "calls": int(n),
                      **({k: float(f"{v:.4g}") for k, v in rate.items()} if t else {})}
    return out


def bench(store, *, prompt_tokens=512, gen_tokens=128, reps=3, warmup_s=3.0, device_index=None,
          require_hardware=False, portable_matmul=False, portable_attention=False, part_bytes=None, norms="auto",
          geglu="auto", decode_dot="auto", burst=8, decode_qk="fused", host_wait="auto", log=print) -> dict:
    from .kernels import Kernels
    from .model import Engine
    from .paths import cache_dir
    from .vulkan import Device
    dev = Device(device_index, require_hardware, cache_dir=cache_dir())
    if host_wait == "block":
        dev.spin_s = 0.0
    kern = Kernels(dev)
    kern.portable_only = portable_matmul
    kern.portable_attention = portable_attention
    kern.decode_dot = decode_dot
    cfg = store.config
    t0 = time.perf_counter()
    engine = Engine(dev, kern, store, context=prompt_tokens + gen_tokens + 8, part_bytes=part_bytes)
    folds = engine.set_folds(norms, geglu)
    engine.set_decode_qk(decode_qk)
    load_s = time.perf_counter() - t0
    matmul = kern.prefill_matmul(store.fmt)
    attention = kern.attention_choice(cfg.head_dim)[1]
    log(f"bench: {cfg.name} {store.fmt} on {dev.info.describe()}; weights uploaded in {load_s:.1f} s; "
        f"prefill: {matmul}, {attention}; decode folds: norms {folds[0]}, geglu {folds[1]}, q/k {decode_qk}; "
        f"decode products: {kern.matvec_choice(store.fmt)[1]}")
    rng = np.random.default_rng(0)
    prompt = [cfg.bos_id] + rng.integers(3, cfg.vocab, prompt_tokens - 1).tolist()

    def run_prefill() -> float:
        engine.reset()
        t = time.perf_counter()
        engine.prefill(prompt, "argmax")
        engine.read_argmax()
        return time.perf_counter() - t

    def run_decode() -> float:
        engine.reset()
        tok = cfg.bos_id
        t = time.perf_counter()
        for _ in range(gen_tokens):
            engine.decode(tok, "argmax")
            tok = engine.read_argmax()
        return time.perf_counter() - t

    def run_burst() -> float:
        """The same greedy decode, ``burst`` steps a submit (Engine.decode_burst: the GPU feeds each
        step's argmax to the next; the host waits once a burst)."""
        engine.reset()
        tok, left = cfg.bos_id, gen_tokens
        t = time.perf_counter()
        while left:
            n = min(burst, left)
            tok = engine.decode_burst(tok, n)[-1]
            left -= n
        return time.perf_counter() - t

    # warm-up: real work until the clocks are up (and every pipeline is built)
    end = time.perf_counter() + warmup_s
    run_prefill()
    run_decode()
    if burst > 1:
        run_burst()
    while time.perf_counter() < end:
        run_prefill()
    pp = [prompt_tokens / run_prefill() for _ in range(reps)]
    tg = [gen_tokens / run_decode() for _ in range(reps)]
    tb = [gen_tokens / run_burst() for _ in range(reps)] if burst > 1 else []

    # per-kernel profile: one decode step at a short context, one full prefill chunk
    engine.reset()
    engine.ctrl.write(np.asarray([16], np.uint32))
    rec = engine.record_step(1, "argmax", timestamps=True)
    rec.submit()
    rec.submit()
    decode_prof = _profile(rec)
    decode_by_matrix = _by_matrix(rec, engine, 1)
    rec.destroy()
    rec = engine.record_step(min(256, prompt_tokens), "none", timestamps=True)
    rec.submit()
    rec.submit()
    prefill_prof = _profile(rec)
    prefill_by_matrix = _by_matrix(rec, engine, min(256, prompt_tokens))
    rec.destroy()

    weight_bytes = sum(w.nbytes for L in engine.layers for w in (L.wqkv, L.wo, L.w_gate_up, L.w_down))
    head_bytes = engine.embed.nbytes
    per_token = weight_bytes + head_bytes
    bw = read_bandwidth(dev, kern)
    med_tg = statistics.median(tg)
    res = {
        "model": cfg.name, "weights": store.fmt, "source": str(store.path),
        "device": dev.info.name, "device_type": dev.info.describe(), "hardware": not dev.info.is_software,
        "driver": dev.info.driver, "vulkan": dev.info.api_version,
        "prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens, "reps": reps, "warmup_s": warmup_s,
        "prefill_tok_s": {"median": statistics.median(pp), "min": min(pp), "max": max(pp), "samples": pp},
        "decode_tok_s": {"median": med_tg, "min": min(tg), "max": max(tg), "samples": tg},
        # greedy decode in bursts of `burst` steps a submit (not what llama-bench's tg measures: it
        # waits for every token, as decode_tok_s does)
        "decode_burst": burst,
        "decode_burst_tok_s": ({"median": statistics.median(tb), "min": min(tb), "max": max(tb), "samples": tb}
                               if tb else None),
        "bytes_per_token": per_token, "read_bandwidth_gb_s": bw / 1e9,
        "decode_bandwidth_fraction": per_token * med_tg / bw,
        "decode_limit_tok_s": bw / per_token,
        "gpu_ms_decode_step": 1e3 * sum(decode_prof.values()),
        "gpu_ms_prefill_chunk": 1e3 * sum(prefill_prof.values()),
        "profile_decode_ms": {k: 1e3 * v for k, v in decode_prof.items()},
        "profile_prefill_chunk_ms": {k: 1e3 * v for k, v in prefill_prof.items()},
        # the products per matrix (all layers): time, and read rate of the weights
        "profile_decode_products": decode_by_matrix,
        "profile_prefill_products": prefill_by_matrix,
        "dispatches_per_decode_step": len(engine._step(1, "argmax").names),
        "weight_part_bytes": part_bytes or Engine.WEIGHT_PART_BYTES,
        "decode_norms": folds[0], "decode_geglu": folds[1], "decode_qk": decode_qk, "host_wait_spin_s": dev.spin_s,
        "decode_products": kern.matvec_choice(store.fmt)[1],
        "prefill_matmul": matmul,
        "prefill_attention": attention,
        "git": _git_rev(), "command": " ".join(["gemforge"] + sys.argv[1:]),
    }
    dev.close()
    return res


def table(results: list[dict]) -> str:
    rows = [f"{'model':<12} {'weights':<7} {'prefill tok/s':>14} {'decode tok/s':>13} {'in bursts':>10} {'limit':>8} "
            f"{'of BW':>6}  device"]
    for r in results:
        b = r.get("decode_burst_tok_s")
        rows.append(f"{r['model']:<12} {r['weights']:<7} {r['prefill_tok_s']['median']:>14.0f} "
                    f"{r['decode_tok_s']['median']:>13.1f} {b['median'] if b else float('nan'):>10.1f} "
                    f"{r['decode_limit_tok_s']:>8.0f} {100 * r['decode_bandwidth_fraction']:>5.0f}%  {r['device']}")
    return "\n".join(rows)


def cmd_bench(args) -> int:
    from .errors import GemforgeError
    from .model import check_burst
    if bool(args.model) == bool(args.synthetic):
        raise GemforgeError("give exactly one of --model PATH.gguf or --synthetic SIZE")
    check_burst(args.burst, "--burst")      # before minutes of weight upload, not after
    results = []
    for w in args.weights.split(","):
        if args.synthetic:
            from .synthetic import SyntheticStore
            store = SyntheticStore(args.synthetic, w)
        else:
            from .gguf_loader import load_weights
            store = load_weights(Path(args.model), w)
        results.append(bench(store, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, reps=args.reps,
                             warmup_s=args.warmup_s, device_index=args.device, require_hardware=args.require_hardware,
                             portable_matmul=args.portable_matmul, portable_attention=args.portable_attention,
                             part_bytes=args.weight_part_mb << 20 if args.weight_part_mb else None,
                             norms=args.norms, geglu=args.geglu, decode_dot=args.decode_dot, burst=args.burst,
                             decode_qk=args.decode_qk, host_wait=args.host_wait,
                             log=lambda s: print(s, file=sys.stderr)))
        r = results[-1]
        top = ", ".join(f"{k} {v:.3f}" for k, v in list(r["profile_decode_ms"].items())[:6])
        print(f"  decode step {r['gpu_ms_decode_step']:.3f} ms GPU in {r['dispatches_per_decode_step']} dispatches: {top}",
              file=sys.stderr)
        for label, v in r["profile_decode_products"].items():
            print(f"    {label}: {v['ms']:.3f} ms in {v['calls']} calls, {v.get('GB_s', 0):.0f} GB/s", file=sys.stderr)
    print(table(results))
    out = Path(args.out) if args.out else Path("bench/results") / (
        f"{time.strftime('%Y%m%d-%H%M%S')}-{results[0]['model']}-{results[0]['device'].replace(' ', '_')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}", file=sys.stderr)
    return 0


def _setup(p):
    p.add_argument("--model", help="a Gemma 3 GGUF")
    p.add_argument("--synthetic", choices=["270m", "1b", "4b", "12b", "27b"], help="random weights of this shape")
    p.add_argument("--weights", default="q8_0", help="format(s), comma-separated: f32,f16,q8_0,q4_0")
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--gen-tokens", type=int, default=128)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup-s", type=float, default=3.0)
    p.add_argument("--device", type=int, default=None)
    p.add_argument("--require-hardware", action="store_true")
    p.add_argument("--portable-matmul", action="store_true",
                   help="prefill on the portable matmul even where the cooperative-matrix one runs (A/B)")
    p.add_argument("--portable-attention", action="store_true",
                   help="prefill attention on the portable kernel even where the cooperative-matrix one runs (A/B)")
    p.add_argument("--norms", choices=["auto", "before", "after", "separate"], default="auto",
                   help="decode: each residual add + norm folded into the next product ('before'), the product "
                        "before it ('after'), or a dispatch of its own ('separate'); A/B runs (default auto)")
    p.add_argument("--geglu", choices=["auto", "before", "after", "separate"], default="auto",
                   help="decode: the GeGLU folded into the down product ('before'), the gate/up product ('after'), "
                        "or a dispatch of its own ('separate'); A/B runs (default auto)")
    p.add_argument("--decode-dot", choices=["auto", "int8", "float"], default="auto",
                   help="decode products of q8_0/q4_0 weights on the integer dot product with int8 x ('int8', "
                        "where the device has it), or with fp32 x ('float'); A/B runs (default auto)")
    p.add_argument("--decode-qk", choices=["fused", "separate"], default="fused",
                   help="decode: q/k norm + RoPE + KV write folded into attention (attention_qk, default) or "
                        "a dispatch of its own (qk_rope); A/B runs")
    p.add_argument("--burst", type=int, default=8,
                   help="also time greedy decode in bursts of this many steps a submit (the GPU feeds each argmax "
                        "to the next step; 1: skip). decode tok/s itself waits for every token, as llama-bench does")
    p.add_argument("--host-wait", choices=["auto", "block"], default="auto",
                   help="how the host waits for each submit: 'auto' polls the fence first on hardware "
                        "(Device.SPIN_S, or GEMFORGE_SPIN_MS), 'block' sleeps in vkWaitForFences at once; A/B runs")
    p.add_argument("--weight-part-mb", type=int, default=None,
                   help="upload weights in row parts of at most this many MiB (default: Engine.WEIGHT_PART_BYTES; "
                        "A/B runs of the part size)")
    p.add_argument("--out", help="JSON file (default bench/results/<time>-<model>-<device>.json)")


register("bench", "measure prefill/decode tok/s, per-kernel GPU time and bandwidth", _setup, cmd_bench, EXAMPLES)
