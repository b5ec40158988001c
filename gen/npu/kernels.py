"""numpy mirrors of the AIE C++ kernels in templates/aie/{mm,mv}_w8a8.cc.j2, for the emulator.

Each function takes the buffers exactly as the core passes them (numpy views with the memref's shape
and dtype; bf16 as uint16 bits) and does what the C++ does: the same tiled layouts, int32 accumulation
(wrapping like the hardware's 32-bit accumulators), and the requantization float(acc) * scale_a * scale_b
rounded in that order in IEEE fp32.  Integer block order does not change an exact integer sum, so the
multiply blocks are written with einsum over the same blocks the C++ loops visit.
"""
from __future__ import annotations

import numpy as np

from .design import R, S, T


def _acc(buf: np.ndarray) -> np.ndarray:
    """The int32 accumulators held in an f32/i32 buffer (the C++ reads it through an int32 pointer)."""
    return buf.view(np.int32)


def _blocks(buf: np.ndarray, rows: int, cols: int, r: int, c: int) -> np.ndarray:
    """A [rows x cols] operand stored as [rows/r][cols/c][r][c], as a 4-d view."""
    return buf.reshape(rows // r, cols // c, r, c)


def scale_of(block: np.ndarray, rows_per_tile: int, k: int, rows: int) -> np.ndarray:
    """The f32 scale of every row of a tiled scale block (first 4 bytes of each row), as scale_of() in C++."""
    flat = block.reshape(-1).view(np.uint8)
    idx = np.array([(i // rows_per_tile) * rows_per_tile * k + (i % rows_per_tile) * S for i in range(rows)])
    return flat[idx[:, None] + np.arange(4)].copy().view(np.float32).reshape(rows)


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 (round to nearest even), as uint16 bits."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def zero_acc(c: np.ndarray) -> None:
    _acc(c)[...] = 0


def matmul_i8_i32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """acc[m x n] += A[m x k] B[n x k]^T for one k block (mm_w8a8.cc.j2: matmul_i8_i32)."""
    m, k = a.shape
    n = b.shape[0]
    A = _blocks(a, m, k, R, S).astype(np.int64)          # [z][i][4][8]
    B = _blocks(b, n, k, T, S).astype(np.int64)          # [j][i][8][8] (rows of W)
    acc = _blocks(_acc(c), m, n, R, T)                   # [z][j][4][8]
    prod = np.einsum("zirs,jits->zjrt", A, B)
    acc[...] = (acc.astype(np.int64) + prod).astype(np.int32)


def _requant_gemm(a, b, acc_buf):
    m, k = a.shape
    n = b.shape[0]
    sa = scale_of(a, R, k, m)
    sw = scale_of(b, T, k, n)
    acc = _blocks(_acc(acc_buf), m, n, R, T)                                  # [z][j][4][8]
    rows = (np.arange(m // R)[:, None, None, None] * R + np.arange(R)[None, None, :, None])
    cols = (np.arange(n // T)[None, :, None, None] * T + np.arange(T)[None, None, None, :])
    v = acc.astype(np.float32) * sa[rows]                                     # float(acc) * a_scale
    return (v * sw[cols]).astype(np.float32)                                  # ... * w_scale


def requant_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    """In place: the f32 output tile replaces its int32 accumulators (mm_w8a8.cc.j2: requant_f32)."""
    y = _requant_gemm(a, b, c)
    c.view(np.float32)[...] = y.reshape(c.shape)


def requant_bf16(a: np.ndarray, b: np.ndarray, acc: np.ndarray, out: np.ndarray) -> None:
    out[...] = to_bf16_bits(_requant_gemm(a, b, acc)).reshape(out.shape)


def matvec_i8_i32(w: np.ndarray, x: np.ndarray, c: np.ndarray, kb: int) -> None:
    """acc[m] += W[m x k] x[kb*k : kb*k + k] (mv_w8a8.cc.j2: matvec_i8_i32)."""
    m, k = w.shape
    W = _blocks(w, m, k, T, S).astype(np.int64)          # [j][i][8][8]
    xb = x.reshape(-1)[kb * k:(kb + 1) * k].astype(np.int64).reshape(k // S, S)
    acc = _acc(c).reshape(m)
    acc[...] = (acc.astype(np.int64) + np.einsum("jits,is->jt", W, xb).reshape(m)).astype(np.int32)


def _requant_gemv(w, x, acc_buf):
    m, k = w.shape
    K = x.size - k
    sx = x.reshape(-1).view(np.uint8)[K:K + 4].copy().view(np.float32)[0]
    sw = scale_of(w, T, k, m)
    v = _acc(acc_buf).reshape(m).astype(np.float32) * sx
    return (v * sw).astype(np.float32)


def requant_f32_gemv(w: np.ndarray, x: np.ndarray, c: np.ndarray) -> None:
    c.view(np.float32).reshape(-1)[...] = _requant_gemv(w, x, c)


def requant_bf16_gemv(w: np.ndarray, x: np.ndarray, acc: np.ndarray, out: np.ndarray) -> None:
    out.reshape(-1)[...] = to_bf16_bits(_requant_gemv(w, x, acc))


def probe_gemm(a, b, c, out=None) -> None:
    """Test hook: in place of requant, pass the int32 accumulators through unchanged (f32 designs only)."""


def lookup(name: str, kind: str, probe: bool = False):
    """The mirror of C function ``name`` in a ``kind`` ("gemm" | "gemv") design."""
    if probe and name.startswith("requant"):
        return probe_gemm
    if kind == "gemv" and name.startswith("requant"):
        return {"requant_f32": requant_f32_gemv, "requant_bf16": requant_bf16_gemv}[name]
    table = {"zero_acc": zero_acc, "matmul_i8_i32": matmul_i8_i32, "requant_f32": requant_f32,
             "requant_bf16": requant_bf16, "matvec_i8_i32": matvec_i8_i32}
    if name not in table:
        raise KeyError(name)
    return table[name]
