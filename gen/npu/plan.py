"""`gemforge plan`: what a placement would cost per token on Phoenix, from published limits only.

Per op of one decode step (and of one prefill chunk): where it runs, how many calls, the NPU tiles a
design uses (from the resource checker on the generated design), bytes moved, operations, and the time a
roofline gives: max(bytes / 89.6 GB/s, ops / 10 TOPS).  Nothing is measured; the assumptions are printed
with the numbers.  The iGPU ops are costed by their DRAM traffic only (the same DDR5 the NPU uses).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gemforge.runtime.config import ModelConfig

from .limits import PHOENIX
from .spec import NpuSpec, parse_npu, tiling

# Bytes per weight of the Vulkan formats (runtime/formats.py: 32-value blocks with an fp16 scale)
FORMAT_BYTES = {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
GEMV_MMUL_USE = 0.25      # the decode design uses 1 of the 4 rows of each 4x8x8 mmul (x is one row)


@dataclass
class Row:
    op: str                # e.g. "matvec gate_up"
    target: str            # npu | vulkan
    calls: int
    bytes: float
    ops: float
    seconds: float
    bound: str             # "memory" | "compute"
    design: str = ""
    tiles: str = ""
    K: int = 0


@dataclass
class Plan:
    placement: str
    model: str
    weights: str
    context: int
    prefill_rows: int
    decode: list[Row] = field(default_factory=list)
    prefill: list[Row] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)

    @property
    def decode_seconds(self) -> float:
        return sum(r.seconds for r in self.decode)

    @property
    def prefill_seconds(self) -> float:
        return sum(r.seconds for r in self.prefill)

    def to_json(self) -> dict:
        from dataclasses import asdict
        return asdict(self) | {"decode_ms_per_token": self.decode_seconds * 1e3,
                               "decode_tok_s": 1 / self.decode_seconds,
                               "prefill_ms_per_chunk": self.prefill_seconds * 1e3,
                               "prefill_tok_s": self.prefill_rows / self.prefill_seconds}


def _roofline(nbytes: float, ops: float, ops_per_s: float) -> tuple[float, str]:
    tm, tc = nbytes / PHOENIX.dram_bytes_per_s, ops / ops_per_s
    return (tm, "memory") if tm >= tc else (tc, "compute")


def _matrix_rows(op: str, ns: NpuSpec, cfg: ModelConfig, target: str, fmt: str, rows: int, layers: int,
                 usage_of) -> list[Row]:
    out = []
    for matrix in ns.matrices:
        calls = 1 if matrix == "lm_head" else layers
        t = tiling(ns, matrix, cfg, rows)
        K, N, M = t.K, t.N, t.M
        ops = 2.0 * M * N * K
        if target == "npu":
            nbytes = N * t.Kp + M * t.Kp + M * N * 4
            peak = PHOENIX.int8_ops_per_s * (GEMV_MMUL_USE if t.kind == "gemv" else 1.0)
            u = usage_of(t)
            tiles = (f"{u.cores} cores, {max(u.data.values()) / 1024:.0f} KB/core, "
                     f"{max(u.memtile.values()) / 1024:.0f} KB/memtile")
            design = t.name
        else:
            nbytes = N * K * FORMAT_BYTES[fmt] + M * K * 4 + M * N * 4
            peak, tiles, design = PHOENIX.igpu_fp32_flops, "", ""
        s, bound = _roofline(nbytes, ops, peak)
        out.append(Row(f"{op} {matrix}", target, calls, nbytes * calls, ops * calls, s * calls, bound, design, tiles, K))
    return out


def _vulkan_rows(cfg: ModelConfig, placement, context: int, rows: int, fmt: str,
                 npu_inputs: list[tuple[int, int]]) -> list[Row]:
    """The other ops of one step with ``rows`` tokens, by DRAM traffic (fp32 activations and KV cache)."""
    H, F, L, f4 = cfg.hidden, cfg.ffn, cfg.layers, 4
    n_glob = sum(cfg.is_global(i) for i in range(L))
    seen_glob = context
    seen_local = min(context, cfg.window)
    kv = cfg.kv_dim * 2 * f4                                   # K and V bytes per position per layer
    items = [
        ("embed", 1, rows * H * (FORMAT_BYTES[fmt] + f4)),
        ("rmsnorm", 4 * L + 1, rows * H * f4 * 2),
        ("qk_rope", L, rows * (cfg.q_dim + cfg.kv_dim) * f4 * 2),
        ("kv_write", L, rows * kv),
        ("attention", L, rows * cfg.q_dim * f4 * 2 + (n_glob * seen_glob + (L - n_glob) * seen_local) * kv / L),
        ("geglu", L, rows * 3 * F * f4),
        ("add", 2 * L, rows * H * f4 * 3),
    ]
    if npu_inputs:   # per-token int8 quantization of the NPU's inputs (read fp32, write int8)
        calls = sum(c for c, _ in npu_inputs)
        items.append(("quantize (for the npu)", calls, sum(c * rows * K * (f4 + 1) for c, K in npu_inputs) / calls))
    out = []
    for op, calls, nbytes in items:
        target = placement.target(op.split()[0])
        s, bound = _roofline(nbytes, 0.0, 1.0)
        out.append(Row(op, target, calls, nbytes * calls, 0.0, s * calls, bound))
    return out


def make_plan(placement, cfg: ModelConfig, specs: dict, weights: str = "q8_0", context: int = 4096,
              prefill_rows: int = 256) -> Plan:
    """``specs``: the op specs (gen.spec.load_specs); ``placement``: runtime.placement.Placement."""
    from pathlib import Path

    from .check import usage_and_violations
    from .mlir import parse
    from .render import aie_environment, render_design
    from gemforge.runtime import paths
    env_dir = Path(paths.templates_dir()) / "aie"
    env = aie_environment(env_dir)
    cache = {}

    def usage_of(t):
        if t.name not in cache:
            cache[t.name] = usage_and_violations(parse(render_design(t, env_dir, env).mlir))[0]
        return cache[t.name]

    plan = Plan(placement.name, cfg.name, weights, context, prefill_rows)
    npu_inputs = {}
    for op, rows, dest in (("matvec", 1, plan.decode), ("matmul", prefill_rows, plan.prefill)):
        ns = parse_npu(specs[op])
        target = placement.target(op)
        mats = _matrix_rows(op, ns, cfg, target, weights, rows, cfg.layers, usage_of)
        dest.extend(mats)
        npu_inputs[op] = [(r.calls, r.K) for r in mats if r.target == "npu"]
    plan.decode += _vulkan_rows(cfg, placement, context, 1, weights, npu_inputs["matvec"])
    plan.prefill += _vulkan_rows(cfg, placement, context, prefill_rows, weights, npu_inputs["matmul"])
    if not any(r.op.endswith("lm_head") for r in plan.prefill):   # a prefill chunk needs the last row's logits
        plan.prefill += [r for r in plan.decode if r.op.endswith("lm_head")]
    on_npu = [r for r in plan.decode if r.target == "npu"]
    weights_bytes = sum(r.bytes for r in plan.decode if r.op.startswith("matvec"))
    plan.assumptions = [
        f"Phoenix published limits: {PHOENIX.int8_ops_per_s / 1e12:.0f} TOPS int8 on the NPU, "
        f"{PHOENIX.dram_bytes_per_s / 1e9:.1f} GB/s DDR5-5600 shared by NPU, iGPU and CPU; every op is "
        "timed by a roofline max(bytes/bandwidth, ops/peak) with the whole bandwidth to itself (ops run one after "
        "another); nothing here was measured",
        f"iGPU: matrix products by a roofline with {PHOENIX.igpu_fp32_flops / 1e12:.1f} TFLOPS fp32 (Radeon 780M), "
        "every other op by its DRAM traffic only (fp32 activations, fp32 KV cache)",
        f"attention reads the KV cache of a {context}-token context (sliding layers at most the "
        f"{cfg.window}-token window); prefill: one chunk of {prefill_rows} tokens",
        f"memory: {weights_bytes / 2**30:.1f} GiB of weights are read per token and must fit in RAM next to "
        "the KV cache",
    ]
    if on_npu:
        plan.assumptions[2:2] = [
            "NPU matrices are int8 per output channel (W8A8) whatever --weights says; each row carries a scale "
            "block of tile_k bytes; --weights sets the iGPU's formats (the embedding table, and every matrix "
            "placed on vulkan)",
            f"decode designs use 1 of the 4 rows of each 4x8x8 mmul, so their compute ceiling is "
            f"{PHOENIX.int8_ops_per_s * GEMV_MMUL_USE / 1e12:.1f} TOPS (decode stays memory-bound)",
            "not included: kernel launch and NPU reconfiguration between designs (each design is its own kernel "
            "in the model's xclbin; switching kernels reloads the array configuration), host synchronisation, "
            f"and NPU/iGPU hand-offs; each 100 us of such overhead per NPU call adds "
            f"{sum(r.calls for r in on_npu) * 0.1:.1f} ms to a decode step",
        ]
    return plan


def format_plan(p: Plan) -> str:
    def table(rows: list[Row], title: str, total: float, per: str) -> list[str]:
        lines = [title, f"  {'op':<26} {'on':<6} {'calls':>5} {'MB':>9} {'GOP':>8} {'ms':>8}  {'bound':<7} tiles"]
        for r in rows:
            lines.append(f"  {r.op:<26} {r.target:<6} {r.calls:>5} {r.bytes / 1e6:>9.2f} {r.ops / 1e9:>8.2f} "
                         f"{r.seconds * 1e3:>8.3f}  {r.bound:<7} {r.tiles}")
        lines.append(f"  {'total':<26} {'':<6} {'':>5} {sum(r.bytes for r in rows) / 1e6:>9.2f} "
                     f"{sum(r.ops for r in rows) / 1e9:>8.2f} {total * 1e3:>8.3f}  {per}")
        return lines

    out = [f"plan: {p.model} on Phoenix, placement {p.placement}, --weights {p.weights}, context {p.context}"]
    out += table(p.decode, "decode (one token):", p.decode_seconds, f"-> {1 / p.decode_seconds:.2f} tok/s projected")
    out += table(p.prefill, f"prefill (one chunk of {p.prefill_rows} tokens):", p.prefill_seconds,
                 f"-> {p.prefill_rows / p.prefill_seconds:.0f} tok/s projected")
    designs = sorted({r.design for r in p.decode + p.prefill if r.design})
    if designs:
        out.append(f"NPU designs ({len(designs)}): " + ", ".join(designs))
    out.append("assumptions:")
    out += [f"  - {a}" for a in p.assumptions]
    return "\n".join(out)
