"""`gemforge tune`: pick each op's tuning parameters on this device, by measurement.

Workflow (the GPU machine may have no shader compiler):
  1. where glslc is:   gemforge kernels --tune-candidates matvec      (every point of the op's
                       tuning space, from its YAML, built as `<artifact>@tune-...`)
  2. on the device:    gemforge tune --op matvec --model 270m,4b,27b --weights q8_0,q4_0
                       every candidate is checked against numpy, then timed with GPU timestamps
                       after a warm-up on every weight shape of the chosen models; the one with
                       the least time per token wins.  Writes configs/tuning/<device-key>.yaml
                       (resumable: formats already in the file are kept unless --redo).
  3. where glslc is:   make kernels   (builds the tuned variants; the runtime picks them on
                       a device whose key matches the file name).
Only resource failures (a pipeline the device cannot create) drop a candidate; a wrong
result is a bug and stops the sweep. Params the sweep does not vary keep the values the file
already gives them (matmul_coop's split-K cost model, set by hand); candidates are built and timed
with the spec's defaults for those, so a matmul_coop sweep compares tiles under the fixed split rule.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import yaml

from .cli import register
from .errors import DeviceError, GemforgeError

# op -> (rows T per call, axes beyond the format, rows of the numpy check)
TUNABLE = {"matvec": (1, {"input": "plain", "out": "plain"}, 1), "matvec_dot": (1, {"out": "plain"}, 1),
            "matmul": (256, {"bucket": 256}, 200), "matmul_coop": (256, {"bucket": 256}, 200)}

EXAMPLES = """examples:
  gemforge kernels --tune-candidates matvec --tune-candidates matmul:bucket=256   # where glslc is
  gemforge tune --op matvec --model 270m,4b,27b --weights q8_0,q4_0
  gemforge tune --op matmul --model 270m,4b --weights q8_0
  gemforge tune --op matvec --out /tmp/h200.yaml --redo
  gemforge tune --op matmul_coop --model 270m,1b --size-class small     # -> configs/tuning/<device>-small.yaml
  gemforge tune --op matvec_dot --model 4b,12b,27b --size-class long     # -> configs/tuning/<device>-long.yaml"""


def matvec_shapes(cfg) -> list[tuple[int, int, int]]:
    """(N, K, times per token) of every decode matrix of a model."""
    L = cfg.layers
    return [((cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, cfg.hidden, L), (cfg.hidden, cfg.q_dim, L),
            (2 * cfg.ffn, cfg.hidden, L), (cfg.hidden, cfg.ffn, L), (cfg.vocab, cfg.hidden, 1)]


def _random_weight(device, fmt, N, K, rng):
    from .kernels import upload_packed_weight
    from .synthetic import random_packed
    return upload_packed_weight(device, random_packed(fmt, N, K, rng), fmt, N, K, f"tune {N}x{K}")


def _times(device, k, weights, x, y, reps: int, T: int, warm_s: float) -> list[float]:
    """Steady-state GPU seconds of one linear call on each weight (a call may be several dispatches: split K
    + its sum), timed as a model step runs them: all weights in turn, ``reps`` times over, in one recording,
    after ``warm_s`` seconds of it (clocks up); the fastest of three timed submits. Timed one shape at a
    time instead (short recordings between host work), candidates on the H200 drifted by up to 7x with
    the order they were timed in."""
    calls = [lambda rec, W=W: k.linear(rec, W, x, y, T) for W, *_ in weights]
    return device.time_calls(calls, reps, "tune", warm_s=warm_s, rounds=3)


def _check(device, k, op, axes, T, rng, tol: float) -> None:
    """One awkward shape against numpy (relative error below ``tol``): a wrong candidate stops the sweep."""
    from . import formats
    from .kernels import upload_weight
    fmt = axes["format"]
    N, K = 77, 1000
    w = rng.standard_normal((N, K)).astype(np.float32) * 0.05
    x = rng.standard_normal((T, K)).astype(np.float32)
    W = upload_weight(device, w, fmt, "tune check")
    bx, by = device.upload(x), device.buffer(4 * N * T)
    rec = device.record()
    k.linear(rec, W, bx, by, T)
    rec.submit()
    rec.destroy()
    want = x @ formats.quantize_roundtrip(w, fmt).T
    got = by.read(np.float32, N * T).reshape(T, N)
    err = float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))
    for b in [bx, by] + [p.buffer for p in W.parts]:
        b.destroy()
    if not err < tol:
        raise GemforgeError(f"tune: candidate {k.program(op, **axes).name} is wrong "
                            f"(relative error {err:.3g}): a kernel bug, not a tuning choice")


def cmd_tune(args) -> int:
    from gemforge.gen import manifest as mf
    from gemforge.gen.spec import load_spec
    from .config import model_config
    from .kernels import Kernels
    from .paths import build_dir, configs_dir
    from .vulkan import Device
    if args.op not in TUNABLE:
        raise GemforgeError(f"--op {args.op}: tuning is implemented for {', '.join(TUNABLE)}")
    T, extra_axes, check_T = TUNABLE[args.op]
    op = args.op
    dev = Device(args.device)
    k = Kernels(dev)
    k.portable_only = op == "matmul"        # linear() must run the op being tuned
    k.decode_dot = "int8" if op == "matvec_dot" else "float"
    if op == "matmul_coop":
        chosen, why = k.matmul_choice(args.weights.split(",")[0], 256)
        if chosen != "matmul_coop":
            raise GemforgeError(f"--op matmul_coop: {why}")
    man = mf.load(build_dir())
    suffix = f"-{args.size_class}" if args.size_class in ("small", "long") else ""
    out = Path(args.out) if args.out else configs_dir() / "tuning" / f"{dev.info.key}{suffix}.yaml"
    text = out.read_text() if out.is_file() else ""
    doc = yaml.safe_load(text) if text else None
    doc = doc or {}
    # the file's leading comment (where its numbers come from) survives the rewrite
    header = "".join(line + "\n" for line in itertools.takewhile(lambda s: s.startswith("#"), text.splitlines()))
    entries = doc.setdefault("entries", {})
    results = doc.setdefault("measured", {})
    models = [model_config(m) for m in args.model.split(",")]
    shapes = [s for cfg in models for s in matvec_shapes(cfg)]
    if args.size_class != "all":   # the products the file will serve (Kernels.shape_class)
        want = {"large": ""}.get(args.size_class, args.size_class)
        shapes = [s for s in shapes if k.shape_class_of(s[0], s[1]) == want]
    if T > 1:   # prefill: the output head runs for the last row only, so it is not a matmul shape
        shapes = [s for s in shapes if s[0] not in {cfg.vocab for cfg in models}]
    if not shapes:
        raise GemforgeError(f"--size-class {args.size_class}: no {args.op} shape of {args.model} is in that class",
                            f"small means at most {k.SMALL_ELEMENTS} weights (N x K), long K >= {k.LONG_RATIO} N, "
                            "large the others; pick other models")
    rng = np.random.default_rng(0)
    print(f"tune: {args.op} on {dev.info.describe()}, {len(shapes)} shapes from {args.model} "
          f"(size class {args.size_class}) -> {out}", file=sys.stderr)
    spec = load_spec(configs_dir() / "ops" / f"{op}.yaml")
    for fmt in args.weights.split(","):
        axes = {"format": fmt, **extra_axes}
        tol = max(spec.tolerance.get(fmt, 1e-4), 1e-4)     # the op's test tolerance (fp16-input kernels: looser)
        default = man.find(op, **axes)
        if default.name in entries.get(op, {}) and not args.redo:
            print(f"  {default.name}: already tuned, kept (--redo to sweep again)", file=sys.stderr)
            continue
        cands = [a for a in man.artifacts.values() if a.op == op and a.axes == default.axes
                 and a.tuning_key.startswith("tune-")]
        if not cands:
            raise GemforgeError(f"no tuning candidates for {default.name} in the build",
                                f"run `gemforge kernels --tune-candidates {op}` where glslc is, and carry build/")
        weights = [(_random_weight(dev, fmt, N, K, rng), N, K, n) for N, K, n in shapes]
        x = dev.upload(rng.standard_normal(T * max(K for _, K, _ in shapes)).astype(np.float32))
        y = dev.buffer(4 * T * max(N for _, N, _, _ in weights))
        scores = {}
        from .progress import Progress
        bar = Progress(f"tune {default.name}", len(cands) + 1, "candidates")   # drawn only on a terminal
        for i, art in enumerate([default] + cands):
            bar.advance()
            try:
                k.pin(art)
            except DeviceError as e:      # a resource limit of this device: not a usable point
                print(f"  {art.name}: dropped ({e.message})", file=sys.stderr)
                continue
            _check(dev, k, op, axes, check_T, rng, tol)
            per_token = sum(n * t for (W, N, K, n), t in zip(weights, _times(dev, k, weights, x, y, args.reps, T,
                                                                             args.warm_ms / 1e3))) / T
            scores[art.name] = (per_token, art)
            if not bar.enabled:
                print(f"  [{i + 1}/{len(cands) + 1}] {art.name}: {1e3 * per_token:.4f} ms of {op} per token",
                      file=sys.stderr)
        bar.close()
        k.unpin(op, **axes)
        best_name, (best_t, best) = min(scores.items(), key=lambda kv: kv[1][0])
        swept = spec.tuning.get("vulkan") or {}     # only what the sweep chose: other params keep the spec's
        params = {p: best.values[p] for p in k.manifest.artifacts[best_name].values
                  if p not in best.axes and p in swept}
        kept = {p: v for p, v in (entries.get(op, {}).get(default.name) or {}).items() if p not in swept}
        params = {**kept, **params}       # values set by hand for what the sweep does not choose stay
        entries.setdefault(op, {})[default.name] = dict(params)   # a copy: no YAML anchors
        # siblings that differ only in what they fold in before or after the product (matvec_<format>_geglu,
        # matvec_<format>_to_addnorm) read the same weights in the same order: they take the same parameters
        def but_input(a):
            return {n: v for n, v in a.axes.items() if n not in ("input", "out")}
        for sib in man.artifacts.values():
            if sib.op == op and sib.tuning_key == "default" and sib.name != default.name \
                    and but_input(sib) == but_input(default):
                entries[op][sib.name] = dict(params)
        results[default.name] = {"models": args.model, "best_ms_per_token": round(1e3 * best_t, 4),
                                 "default_ms_per_token": round(1e3 * scores[default.name][0], 4),
                                 "params": params, "candidates": len(scores)}
        print(f"  -> {default.name}: {params}, {1e3 * best_t:.3f} ms/token "
              f"(default {1e3 * scores[default.name][0]:.3f})", file=sys.stderr)
        for W, *_ in weights:
            for p in W.parts:
                p.buffer.destroy()
        out.parent.mkdir(parents=True, exist_ok=True)
        doc["device"] = dev.info.name
        doc["driver"] = dev.info.driver
        out.write_text(header + yaml.safe_dump(doc, sort_keys=True))
    print(f"tune: wrote {out}", file=sys.stderr)
    dev.close()
    return 0


def _setup(p):
    p.add_argument("--op", default="matvec", help="the op to tune (default matvec)")
    p.add_argument("--model", default="270m,1b,4b,12b,27b", help="models whose shapes are timed (comma-separated)")
    p.add_argument("--weights", default="q8_0,q4_0,f16", help="weight formats to tune (comma-separated)")
    p.add_argument("--reps", type=int, default=10, help="timed dispatches per shape")
    p.add_argument("--warm-ms", type=float, default=50.0,
                   help="milliseconds of each candidate's calls before timing them (default 50: an idle GPU "
                        "starts at low clocks)")
    p.add_argument("--device", type=int, default=None)
    p.add_argument("--out", help="tuning file (default configs/tuning/<device-key>.yaml)")
    p.add_argument("--redo", action="store_true", help="sweep formats already in the file again")
    p.add_argument("--size-class", choices=["all", "small", "long", "large"], default="all",
                   help="time only the small products (<= 4M weights; writes configs/tuning/<device>-small.yaml), "
                        "the long ones (K >= 2 N, the down projections; <device>-long.yaml) or the others "
                        "(<device>.yaml); default all, into <device>.yaml")


register("tune", "sweep an op's tuning space on this device and write configs/tuning/<device>.yaml", _setup, cmd_tune,
         EXAMPLES)
