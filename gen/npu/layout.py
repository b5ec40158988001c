"""Host-side data layouts of the W8A8 designs, and the numpy W8A8 reference.

* ``quantize_rows``: symmetric int8 per row: scale = max|row| / 127, q = round(x / scale) in [-127, 127].
  Weights: per output channel (row of W [N, K]), once at load time.  Activations: per token (row of x),
  dynamically before every product (on the iGPU in the phoenix placement).
* ``pack_rows``: each row becomes K + k bytes: the int8 values, then a k-byte scale block whose first
  4 bytes are the row's f32 scale (little endian) and the rest zeros (design.py explains why).
* ``pack_weight``: rows permuted so that each NPU column streams one contiguous block (design.py).
* ``w8a8_reference``: y = (float(x_q @ W_q^T) * s_x) * s_w in fp32, the order the kernels round in.
"""
from __future__ import annotations

import numpy as np

from .design import Tiling
from .kernels import to_bf16_bits


def quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float32)
    amax = np.abs(x).max(axis=-1)
    scale = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint(x / safe[..., None]), -127, 127).astype(np.int8)
    return q, scale


def pack_rows(q: np.ndarray, scale: np.ndarray, k: int) -> np.ndarray:
    """[rows, K] int8 + [rows] f32 -> [rows, K + k] uint8."""
    rows, K = q.shape
    out = np.zeros((rows, K + k), np.uint8)
    out[:, :K] = q.view(np.uint8)
    out[:, K:K + 4] = np.asarray(scale, np.float32).reshape(rows, 1).view(np.uint8)
    return out


def weight_row_order(t: Tiling) -> np.ndarray:
    """perm[i] = the row of W stored at position i of the packed weight."""
    C, Rw = t.cols, t.rows
    if t.kind == "gemm":
        n, tiles = t.n, t.N // (t.cols * t.n)
        return np.array([(j * C + c) * n + i for c in range(C) for j in range(tiles) for i in range(n)])
    m, G = t.m, t.tiles_per_core
    return np.array([((g * C + c) * Rw + r) * m + i for c in range(C) for g in range(G) for r in range(Rw)
                     for i in range(m)])


def pack_weight(w: np.ndarray, t: Tiling) -> np.ndarray:
    """W [N, K] fp32 -> the design's weight argument (uint8, N * (K + k) bytes)."""
    q, s = quantize_rows(w)
    return pack_rows(q, s, t.k)[weight_row_order(t)].reshape(-1)


def pack_activations(x: np.ndarray, t: Tiling) -> np.ndarray:
    """x [M, K] (gemm) or [K] (gemv) fp32 -> the design's activation argument (uint8)."""
    x2 = np.asarray(x, np.float32).reshape(-1, t.K)
    q, s = quantize_rows(x2)
    return pack_rows(q, s, t.k).reshape(-1)


def w8a8_reference(x: np.ndarray, w: np.ndarray, out: str = "f32") -> np.ndarray:
    """y = x @ w.T with both operands quantized per row, int32 accumulation, fp32 (or bf16 bits) out."""
    xq, sx = quantize_rows(np.atleast_2d(x))
    wq, sw = quantize_rows(w)
    acc = int8_matmul(xq, wq)
    y = ((acc.astype(np.float32) * sx[:, None]) * sw[None, :]).astype(np.float32)
    y = y if out == "f32" else to_bf16_bits(y)
    return y.reshape(np.shape(x)[:-1] + (w.shape[0],))


def int8_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy's int8 matrix product a @ b.T with int32 results (wrapping like a 32-bit accumulator)."""
    return (a.astype(np.int64) @ b.astype(np.int64).T).astype(np.int32)
