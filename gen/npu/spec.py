"""The ``npu:`` section of an op spec (configs/ops/*.yaml), validated, and expanded into NPU designs.

```yaml
npu:
  design: gemm                  # gemm (prefill, M = every bucket) | gemv (decode, M = 1)
  matrices:                     # y = x @ W^T with W [N, K]: name -> [K, N], expressions over model fields
    qkv: [hidden, "q_dim + 2 * kv_dim"]
  buckets: [16, 32, 64, 128, 256]      # gemm only; default: every prefill bucket
  params:                       # the tiling and array shape (defaults below), tunable
    tile_m: 64                  # gemm: rows of x per array pass (rows x m)
    tile_k: 128                 # K per block
    tile_n: 256                 # gemm: columns of y per array pass (cols x n); gemv: rows of W per core
    cols: 4
    rows: 4
    depth: 2                    # ObjectFifo depth
    out: f32                    # f32 | bf16
  tuning: {tile_k: [64, 128, 256]}     # values a tuner may sweep (recorded, not yet swept on hardware)
```
Model fields usable in expressions: hidden, ffn, head_dim, n_heads, n_kv_heads, vocab, window, q_dim
(n_heads * head_dim), kv_dim (n_kv_heads * head_dim).  Errors name the file, the op and the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from gemforge.runtime.errors import SpecError

from ..spec import BUCKETS, OpSpec, _Expr
from .design import OUT_TYPES, Tiling, TilingError, gemm_tiling, gemv_tiling

KEYS = {"design", "matrices", "buckets", "params", "tuning"}
DESIGNS = ("gemm", "gemv")
PARAMS = {
    "gemm": {"tile_m": 64, "tile_k": 128, "tile_n": 256, "cols": 4, "rows": 4, "depth": 2, "out": "f32"},
    "gemv": {"tile_k": 256, "tile_n": 64, "cols": 4, "rows": 4, "depth": 2, "out": "f32"},
}
MODEL_NAMES = ("hidden", "ffn", "head_dim", "n_heads", "n_kv_heads", "vocab", "window", "q_dim", "kv_dim")


@dataclass(frozen=True)
class NpuSpec:
    op: str
    path: str
    design: str
    matrices: Mapping[str, tuple[str, str]]
    buckets: tuple[int, ...]
    params: Mapping[str, Any]
    tuning: Mapping[str, tuple]


@dataclass(frozen=True)
class Use:
    """One place a design serves: model, op, matrix, rows (bucket; 1 for gemv)."""
    model: str
    op: str
    matrix: str
    rows: int


def _where(path, op, field) -> str:
    return f"{path}: op '{op}', field 'npu.{field}'"


def parse_npu(spec: OpSpec) -> NpuSpec | None:
    """Validate ``spec.npu``; None when the op has no NPU section."""
    npu, path, op = spec.npu, spec.path, spec.op
    if npu is None:
        return None

    def want(cond, field, msg, hint=None):
        if not cond:
            raise SpecError(f"{_where(path, op, field)}: {msg}", hint)

    unknown = sorted(set(npu) - KEYS)
    want(not unknown, unknown[0] if unknown else "", "unknown key", f"allowed keys: {', '.join(sorted(KEYS))}")
    design = npu.get("design")
    want(design in DESIGNS, "design", f"must be one of {', '.join(DESIGNS)}, got {design!r}")
    mats = npu.get("matrices")
    want(isinstance(mats, dict) and mats, "matrices", "must be a mapping of name to [K, N] expressions")
    matrices = {}
    for name, kn in mats.items():
        f = f"matrices.{name}"
        want(isinstance(name, str) and name.isidentifier(), f, "matrix names must be identifiers")
        want(isinstance(kn, list) and len(kn) == 2, f, f"must be [K, N], got {kn!r}")
        exprs = []
        for part, e in zip("KN", kn):
            text = str(e)
            try:
                ex = _Expr(text)
            except (SyntaxError, ValueError) as err:
                raise SpecError(f"{_where(path, op, f)}: cannot parse {part} = {text!r}: {err}") from None
            bad = ex.names - set(MODEL_NAMES)
            want(not bad, f, f"{part} = {text!r} names {', '.join(sorted(bad))}, not a model field",
                 f"use {', '.join(MODEL_NAMES)}")
            exprs.append(text)
        matrices[name] = tuple(exprs)
    buckets = npu.get("buckets", list(BUCKETS))
    if design == "gemv":
        want("buckets" not in npu, "buckets", "a gemv design has one row (decode); remove 'buckets'")
        buckets = [1]
    else:
        want(isinstance(buckets, list) and buckets and all(b in BUCKETS for b in buckets), "buckets",
             f"must be a list of prefill buckets ({', '.join(map(str, BUCKETS))}), got {buckets!r}")
    params = dict(PARAMS[design])
    given = npu.get("params", {}) or {}
    want(isinstance(given, dict), "params", "must be a mapping")
    for k, v in given.items():
        want(k in params, f"params.{k}", "unknown parameter", f"{design} takes {', '.join(PARAMS[design])}")
        if k == "out":
            want(v in OUT_TYPES, f"params.{k}", f"must be one of {', '.join(OUT_TYPES)}, got {v!r}")
        else:
            want(isinstance(v, int) and not isinstance(v, bool) and v > 0, f"params.{k}",
                 f"must be a positive integer, got {v!r}")
        params[k] = v
    for k, lim in (("cols", 4), ("rows", 4)):
        want(params[k] <= lim, f"params.{k}", f"{params[k]} exceeds the {lim} {k} of npu1")
    tuning = npu.get("tuning", {}) or {}
    want(isinstance(tuning, dict), "tuning", "must be a mapping of param to a list of values")
    for k, vs in tuning.items():
        want(k in params, f"tuning.{k}", "unknown parameter", f"{design} takes {', '.join(PARAMS[design])}")
        want(isinstance(vs, list) and vs, f"tuning.{k}", "must be a non-empty list")
    return NpuSpec(op, str(path), design, matrices, tuple(buckets), params, {k: tuple(v) for k, v in tuning.items()})


def model_env(cfg) -> dict[str, int]:
    env = dict(cfg.shape_values())
    env.update(q_dim=cfg.q_dim, kv_dim=cfg.kv_dim)
    return env


def _value(text: str, env: Mapping[str, int]):
    e = _Expr(text)          # gen.spec's safe evaluator; its __call__ gives a truth value, so evaluate the body
    return e._eval(e.tree.body, env)


def shape(ns: NpuSpec, matrix: str, cfg) -> tuple[int, int]:
    env = model_env(cfg)
    K, N = (_value(e, env) for e in ns.matrices[matrix])
    if not all(isinstance(v, int) and v > 0 for v in (K, N)):
        raise SpecError(f"{_where(ns.path, ns.op, 'matrices.' + matrix)}: [K, N] = [{K}, {N}] for {cfg.name}",
                        "K and N must be positive integers")
    return K, N


def tiling(ns: NpuSpec, matrix: str, cfg, rows: int, params: Mapping[str, Any] | None = None) -> Tiling:
    """The design of one matrix of one model at ``rows`` rows; ``params`` override the spec's."""
    p = dict(ns.params)
    p.update(params or {})
    K, N = shape(ns, matrix, cfg)
    try:
        if ns.design == "gemm":
            return gemm_tiling(rows, K, N, p["tile_m"], p["tile_k"], p["tile_n"], p["cols"], p["rows"], p["depth"],
                               p["out"])
        return gemv_tiling(K, N, p["tile_n"], p["tile_k"], p["cols"], p["rows"], p["depth"], p["out"])
    except TilingError as e:
        raise SpecError(f"{_where(ns.path, ns.op, 'params')}: matrix '{matrix}' of {cfg.name} "
                        f"([K, N] = [{K}, {N}], {rows} rows): {e}", "change the tiling in the op's npu.params") from None


def expand(ns: NpuSpec, models: Mapping[str, Any]) -> dict[str, tuple[Tiling, list[Use]]]:
    """Every design the configured models need, by design name, with where each is used."""
    out: dict[str, tuple[Tiling, list[Use]]] = {}
    for mname, cfg in sorted(models.items()):
        for matrix in ns.matrices:
            for rows in ns.buckets:
                t = tiling(ns, matrix, cfg, rows)
                out.setdefault(t.name, (t, []))[1].append(Use(cfg.name, ns.op, matrix, rows))
    return out
