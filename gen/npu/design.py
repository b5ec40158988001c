"""NPU designs as data: the tiling of one matrix product and everything the MLIR template lays out.

Two designs, both W8A8 (int8 activations x int8 weights -> int32, requantized to f32 or bf16):

* ``gemm`` (prefill, y[M,N] = x[M,K] @ W[N,K]^T, M = a prefill bucket): the whole_array layout of the
  pinned release.  Core (c, r) computes m x n output tiles; A (activations) row blocks travel
  shim c -> memtile c -> broadcast to row r, B (weights) column blocks shim c -> memtile c -> broadcast to
  column c; C tiles are joined in memtile c and written back by shim c.
* ``gemv`` (decode, y[N] = W[N,K] x[K]): every core streams its own rows of W (shim c -> memtile c ->
  distributed to the 4 cores of column c); x is broadcast from shim 0 to all cores once per call and kept.

Scales ride in the data ("scale block"): every row of the int8 activations and of the int8 weights is
K + k bytes long; the last k-byte block holds the row's f32 scale in its first 4 bytes and zeros after.
The cores run K/k multiply blocks, then one requantize block that reads the two scales:
y = float(acc) * a_scale[row] * w_scale[col].  So no DMA channel is spent on scales (a compute tile has two
input channels, A and B use them), at the cost of one extra K block of traffic (k/K).

The host layouts (scale blocks, the weight-row permutation that makes every column's weights one
contiguous stream) are in ``layout.py``; this module only computes tilings and template contexts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .limits import LIMITS

R, S, T = 4, 8, 8          # aie::mmul<4, 8, 8, int8, int8>: A r x s, B s x t, C r x t
OUT_TYPES = {"f32": "f32", "bf16": "bf16"}
OUT_BYTES = {"f32": 4, "bf16": 2}
INF = 0xFFFFFFFF           # the cores' outer loop (the release's examples loop "forever")
PING_PONG = 8              # BD ids: task t uses ids 8*(t % 2) + 0.. on each shim (16 per shim)


class TilingError(ValueError):
    """A shape that the requested tiling cannot cover; the message says why."""


@dataclass(frozen=True)
class Tiling:
    kind: str        # "gemm" | "gemv"
    M: int           # rows of x (gemm: the prefill bucket; gemv: 1)
    K: int
    N: int
    m: int           # per core: rows of x (gemm) / rows of W (gemv) per output tile
    k: int           # per core: K per block
    n: int           # per core: columns of y per output tile (gemm); gemv: equal to m
    cols: int
    rows: int
    depth: int
    out: str         # "f32" | "bf16"
    requested: tuple = field(default=(), compare=False)   # (tile_m, tile_k, tile_n) asked for

    @property
    def Kp(self) -> int:
        """Row length in bytes of the int8 operands: K plus the scale block."""
        return self.K + self.k

    @property
    def cores(self) -> int:
        return self.cols * self.rows

    @property
    def name(self) -> str:
        base = (f"gemm_w8a8_{self.out}_m{self.M}_k{self.K}_n{self.N}_t{self.rows * self.m}x{self.k}x{self.cols * self.n}"
                if self.kind == "gemm" else
                f"gemv_w8a8_{self.out}_k{self.K}_n{self.N}_t{self.m}x{self.k}")
        extra = ("" if (self.cols, self.rows) == (4, 4) else f"_a{self.cols}x{self.rows}") + \
                ("" if self.depth == 2 else f"_d{self.depth}")
        return base + extra

    @property
    def tiles_per_core(self) -> int:
        if self.kind == "gemm":
            return (self.M // (self.rows * self.m)) * (self.N // (self.cols * self.n))
        return self.N // (self.cores * self.m)

    @property
    def macs(self) -> int:
        return self.M * self.N * self.K


def _largest(step: int, limit: int, divides: int) -> int | None:
    """The largest multiple of ``step`` <= ``limit`` that divides ``divides``."""
    for v in range(limit - limit % step, 0, -step):
        if divides % v == 0:
            return v
    return None


def gemm_tiling(M: int, K: int, N: int, tile_m: int, tile_k: int, tile_n: int, cols: int = 4, rows: int = 4,
                depth: int = 2, out: str = "f32") -> Tiling:
    """Per-core m, k, n for y[M,N] = x[M,K] W[N,K]^T on a cols x rows array.

    The array tile is tile_m x tile_k x tile_n (m = tile_m / rows, n = tile_n / cols); a bucket smaller than
    tile_m uses tile_m = M; k and n shrink to the largest multiple of 8 that divides K (resp. N / cols).
    """
    if out not in OUT_TYPES:
        raise TilingError(f"out must be one of {', '.join(OUT_TYPES)}, got {out!r}")
    tm = min(tile_m, M)
    if M % tm or tm % (rows * R):
        raise TilingError(f"M={M} rows need tile_m ({tm}) dividing M and a multiple of rows x {R} = {rows * R}")
    k = _largest(S, tile_k, K)
    if k is None:
        raise TilingError(f"no multiple of {S} <= tile_k={tile_k} divides K={K}")
    if N % cols:
        raise TilingError(f"N={N} is not a multiple of cols={cols}")
    n = _largest(T, tile_n // cols, N // cols)
    if n is None:
        raise TilingError(f"no multiple of {T} <= tile_n/cols={tile_n // cols} divides N/cols={N // cols}")
    return Tiling("gemm", M, K, N, tm // rows, k, n, cols, rows, depth, out, (tile_m, tile_k, tile_n))


def gemv_tiling(K: int, N: int, tile_n: int, tile_k: int, cols: int = 4, rows: int = 4, depth: int = 2,
                out: str = "f32") -> Tiling:
    """Per-core rows of W (m) and k for y[N] = W[N,K] x[K]: every core owns N / (cols*rows) rows."""
    if out not in OUT_TYPES:
        raise TilingError(f"out must be one of {', '.join(OUT_TYPES)}, got {out!r}")
    k = _largest(S, tile_k, K)
    if k is None:
        raise TilingError(f"no multiple of {S} <= tile_k={tile_k} divides K={K}")
    per_core, rest = divmod(N, cols * rows)
    if rest:
        raise TilingError(f"N={N} is not a multiple of cols x rows = {cols * rows}")
    m = _largest(T, tile_n, per_core)
    if m is None:
        raise TilingError(f"no multiple of {T} <= tile_n={tile_n} divides N/(cols*rows)={per_core}")
    return Tiling("gemv", 1, K, N, m, k, m, cols, rows, depth, out, (tile_n, tile_k))


# ---------------------------------------------------------------------------------------------------
# Template contexts


def memref(shape, dtype: str) -> str:
    return "memref<" + "x".join(str(s) for s in shape) + f"x{dtype}>"


def _fifo(name, producer, consumers, depth, shape, dtype, dims=()):
    return {"name": name, "producer": producer, "consumers": list(consumers), "depth": depth,
            "type": memref(shape, dtype), "dims": [list(d) for d in dims]}


def _tiled_dims(rows: int, cols: int, r: int, c: int):
    """dimensionsToStream that turn a row-major rows x cols block into r x c sub-blocks, row-major
    within and between blocks ([rows/r][cols/c][r][c])."""
    return [(rows // r, r * cols), (cols // c, c), (r, cols), (c, 1)]


def _untile_dims(rows: int, cols: int, r: int, c: int):
    """The inverse for an output block stored as [rows/r][cols/c][r][c]: a row-major stream."""
    return [(rows // r, r * cols), (r, c), (cols // c, r * c), (c, 1)]


def _dma(arg, fifo, bd, offset, sizes, strides, token=False):
    return {"op": "dma", "arg": arg, "fifo": fifo, "id": bd, "offsets": [0, 0, 0, offset],
            "sizes": list(sizes), "strides": list(strides), "token": token}


def _waits(fifos):
    return [{"op": "wait", "fifo": f} for f in fifos]


def _chunks(total: int, most: int):
    """(start, count) pieces of ``total`` of at most ``most`` each."""
    return [(s, min(most, total - s)) for s in range(0, total, most)]


def _repeat_cap(stride_bytes: int) -> int:
    """How many iterations one shim BD may repeat with this outer stride (1 when the stride does not fit)."""
    return LIMITS.repeats if stride_bytes // LIMITS.align_bytes <= LIMITS.shim_stride_words else 1


def kernel_expansion(m: int, n: int) -> tuple[int, int]:
    """How many 4x8x8 mmul accumulators a kernel keeps along m (rows) and n (columns)."""
    em = 4 if m % (4 * R) == 0 else 2 if m % (2 * R) == 0 else 1
    en = 2 if n % (2 * T) == 0 else 1
    return em, en


def gemm_context(t: Tiling) -> dict:
    assert t.kind == "gemm"
    C, Rw, m, k, n, Kp, M, N, d = t.cols, t.rows, t.m, t.k, t.n, t.Kp, t.M, t.N, t.depth
    out_t = OUT_TYPES[t.out]
    a_per_mem = Rw // C if C < Rw else 1          # core rows fed by one memtile
    n_a_mem = min(C, Rw)
    fifos, links, buffers = [], [], []
    for i in range(n_a_mem):
        fifos.append(_fifo(f"A_L3L2_{i}", (i, 0), [(i, 1)], d, (a_per_mem * m * k,), "i8"))
    for r in range(Rw):
        consumers = [(c, 2 + r) for c in range(C)]
        fifos.append(_fifo(f"A_L2L1_{r}", (r // a_per_mem, 1), consumers, d, (m, k), "i8", _tiled_dims(m, k, R, S)))
    for i in range(n_a_mem):
        dst = list(range(i * a_per_mem, (i + 1) * a_per_mem))
        links.append({"srcs": [f"A_L3L2_{i}"], "dsts": [f"A_L2L1_{r}" for r in dst], "src_offsets": [],
                      "dst_offsets": [m * k * j for j in range(len(dst))] if len(dst) > 1 else []})
    for c in range(C):
        fifos.append(_fifo(f"B_L3L2_{c}", (c, 0), [(c, 1)], d, (n * k,), "i8"))
        fifos.append(_fifo(f"B_L2L1_{c}", (c, 1), [(c, 2 + r) for r in range(Rw)], d, (n, k), "i8",
                           _tiled_dims(n, k, T, S)))
        links.append({"srcs": [f"B_L3L2_{c}"], "dsts": [f"B_L2L1_{c}"], "src_offsets": [], "dst_offsets": []})
    for c in range(C):
        for r in range(Rw):
            fifos.append(_fifo(f"C_L1L2_{c}_{r}", (c, 2 + r), [(c, 1)], d, (m, n), out_t))
        fifos.append(_fifo(f"C_L2L3_{c}", (c, 1), [(c, 0)], d, (Rw * m * n,), out_t, _untile_dims(m, n, R, T)))
        links.append({"srcs": [f"C_L1L2_{c}_{r}" for r in range(Rw)], "dsts": [f"C_L2L3_{c}"],
                      "src_offsets": [m * n * r for r in range(Rw)] if Rw > 1 else [], "dst_offsets": []})
    a_t, b_t, c_t = memref((m, k), "i8"), memref((n, k), "i8"), memref((m, n), out_t)
    acc_t = memref((m, n), "i32")
    if t.out == "f32":   # accumulate in place: the f32 output tile holds int32 accumulators until requantized
        funcs = [("zero_acc", [c_t]), ("matmul_i8_i32", [a_t, b_t, c_t]), ("requant_f32", [a_t, b_t, c_t])]
    else:                # bf16 output is half as wide: accumulate in a separate int32 buffer
        funcs = [("zero_acc", [acc_t]), ("matmul_i8_i32", [a_t, b_t, acc_t]),
                 ("requant_bf16", [a_t, b_t, acc_t, c_t])]
    cores = []
    for r in range(Rw):
        for c in range(C):
            if t.out == "bf16":
                buffers.append({"name": f"acc_{c}_{2 + r}", "tile": (c, 2 + r), "type": acc_t})
            cores.append({"tile": (c, 2 + r), "a": f"A_L2L1_{r}", "b": f"B_L2L1_{c}", "c": f"C_L1L2_{c}_{r}",
                          "acc": f"acc_{c}_{2 + r}" if t.out == "bf16" else None})
    # Runtime sequence: one task per (row block of rows*m rows of x, chunk of at most `cap` output tiles per
    # column).  Weights are permuted on the host so that column c's tiles are one contiguous stream:
    # W_perm[c][j] = W rows of output tile j*C + c (layout.py); the output tiles of column c interleave.
    Nc = N // C                                   # weight rows (outputs) per column
    tiles_c = Nc // n
    cap = min(_repeat_cap(n * Kp), LIMITS.repeats)
    tasks = [(rb, j0, J) for rb in range(M // (Rw * m)) for j0, J in _chunks(tiles_c, cap)]
    seq = []
    for ti, (rb, j0, J) in enumerate(tasks):
        base = PING_PONG * (ti % 2)
        for c in range(C):
            seq.append(_dma(2, f"C_L2L3_{c}", base, rb * Rw * m * N + (j0 * C + c) * n,
                            [1, J, Rw * m, n], [0, C * n, N, 1], token=True))
            if c < n_a_mem:
                seq.append(_dma(0, f"A_L3L2_{c}", base + 1, (rb * Rw * m + c * a_per_mem * m) * Kp,
                                [J, Kp // k, a_per_mem * m, k], [0, k, Kp, 1]))
            seq.append(_dma(1, f"B_L3L2_{c}", base + 2, c * Nc * Kp + j0 * n * Kp,
                            [J, Kp // k, n, k], [n * Kp, k, Kp, 1]))
        if ti:
            seq += _waits(f"C_L2L3_{c}" for c in range(C))
    seq += _waits(f"C_L2L3_{c}" for c in range(C))
    args = [memref((M * Kp,), "i8"), memref((N * Kp,), "i8"), memref((M * N,), out_t)]
    return {"t": t, "name": t.name, "cols": C, "rows": Rw, "funcs": funcs, "fifos": fifos, "links": links,
            "buffers": buffers, "cores": cores, "args": args, "seq": seq, "tiles_per_core": t.tiles_per_core,
            "k_blocks": K_blocks(t), "inf": INF, "stack": LIMITS.default_stack_bytes}


def K_blocks(t: Tiling) -> int:
    """Multiply blocks per output tile (the scale block comes after them)."""
    return t.K // t.k


def gemv_context(t: Tiling) -> dict:
    assert t.kind == "gemv"
    C, Rw, m, k, Kp, N, d = t.cols, t.rows, t.m, t.k, t.Kp, t.N, t.depth
    out_t = OUT_TYPES[t.out]
    G = t.tiles_per_core                          # output tiles (groups) per core
    fifos, links, buffers = [], [], []
    fifos.append(_fifo("X_L3L1", (0, 0), [(c, 2 + r) for r in range(Rw) for c in range(C)], 1, (Kp,), "i8"))
    for c in range(C):
        fifos.append(_fifo(f"W_L3L2_{c}", (c, 0), [(c, 1)], d, (Rw * m * k,), "i8"))
        for r in range(Rw):
            fifos.append(_fifo(f"W_L2L1_{c}_{r}", (c, 1), [(c, 2 + r)], d, (m, k), "i8", _tiled_dims(m, k, T, S)))
        links.append({"srcs": [f"W_L3L2_{c}"], "dsts": [f"W_L2L1_{c}_{r}" for r in range(Rw)], "src_offsets": [],
                      "dst_offsets": [m * k * r for r in range(Rw)] if Rw > 1 else []})
        for r in range(Rw):
            fifos.append(_fifo(f"Y_L1L2_{c}_{r}", (c, 2 + r), [(c, 1)], d, (m,), out_t))
        fifos.append(_fifo(f"Y_L2L3_{c}", (c, 1), [(c, 0)], d, (Rw * m,), out_t))
        links.append({"srcs": [f"Y_L1L2_{c}_{r}" for r in range(Rw)], "dsts": [f"Y_L2L3_{c}"],
                      "src_offsets": [m * r for r in range(Rw)] if Rw > 1 else [], "dst_offsets": []})
    w_t, x_t, y_t, acc_t = memref((m, k), "i8"), memref((Kp,), "i8"), memref((m,), out_t), memref((m,), "i32")
    if t.out == "f32":
        funcs = [("zero_acc", [y_t]), ("matvec_i8_i32", [w_t, x_t, y_t, "i32"]), ("requant_f32", [w_t, x_t, y_t])]
    else:
        funcs = [("zero_acc", [acc_t]), ("matvec_i8_i32", [w_t, x_t, acc_t, "i32"]),
                 ("requant_bf16", [w_t, x_t, acc_t, y_t])]
    cores = []
    for r in range(Rw):
        for c in range(C):
            if t.out == "bf16":
                buffers.append({"name": f"acc_{c}_{2 + r}", "tile": (c, 2 + r), "type": acc_t})
            cores.append({"tile": (c, 2 + r), "w": f"W_L2L1_{c}_{r}", "x": "X_L3L1", "y": f"Y_L1L2_{c}_{r}",
                          "acc": f"acc_{c}_{2 + r}" if t.out == "bf16" else None})
    # Weights permuted on the host: W_perm[c][g][r] = W rows of group g, column c, core row r (layout.py),
    # so column c streams one contiguous block; y of (g, c, r) lands at ((g*C + c)*R + r)*m.
    cap = min(_repeat_cap(Rw * m * Kp), LIMITS.repeats)
    seq = [_dma(1, "X_L3L1", 15, 0, [1, 1, 1, Kp], [0, 0, 0, 1])]
    for ti, (g0, Gc) in enumerate(_chunks(G, cap)):
        base = PING_PONG * (ti % 2)
        for c in range(C):
            seq.append(_dma(2, f"Y_L2L3_{c}", base, (g0 * C + c) * Rw * m, [1, 1, Gc, Rw * m], [0, 0, C * Rw * m, 1],
                            token=True))
            seq.append(_dma(0, f"W_L3L2_{c}", base + 1, (c * G + g0) * Rw * m * Kp, [Gc, Kp // k, Rw * m, k],
                            [Rw * m * Kp, k, Kp, 1]))
        if ti:
            seq += _waits(f"Y_L2L3_{c}" for c in range(C))
    seq += _waits(f"Y_L2L3_{c}" for c in range(C))
    args = [memref((N * Kp,), "i8"), memref((Kp,), "i8"), memref((N,), out_t)]
    return {"t": t, "name": t.name, "cols": C, "rows": Rw, "funcs": funcs, "fifos": fifos, "links": links,
            "buffers": buffers, "cores": cores, "args": args, "seq": seq, "tiles_per_core": G,
            "k_blocks": K_blocks(t), "inf": INF, "stack": LIMITS.default_stack_bytes}


def context(t: Tiling) -> dict:
    return gemm_context(t) if t.kind == "gemm" else gemv_context(t)
