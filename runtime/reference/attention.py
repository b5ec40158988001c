"""numpy references for RoPE, the KV cache, attention, GeGLU, add and the sampling helpers.

Written to read like GEMMA3.md and COMMON.md; the op tests compare the GPU kernels with
these.  Inputs and outputs are fp32; where the GPU's rounding is not the point
(attention, sin/cos, tanh) the math runs in float64, so a test measures the kernel's
error alone.

KV cache ring buffer (C slots): the key of position p lives in slot p mod C.  For a step
with positions pos0 .. p_end (p_end = pos0 + T - 1), slot j holds the key of position
kpos = p_end - ((p_end - j) mod C), valid iff kpos >= 0.  A query at position p sees
kpos <= p and, for sliding layers (window > 0), kpos > p - window.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["rope_inv_freq", "rope_angles", "rope_neox", "kv_write", "ring_positions", "attention",
           "attention_dense", "gelu_tanh", "geglu", "add", "argmax", "topk"]


def rope_inv_freq(head_dim: int, base: float, scale: float = 1.0) -> np.ndarray:
    """inv_freq[i] = 1 / base**(2i/D) / scale in fp32, as transformers computes it ([D/2]).

    Every step is rounded to fp32; the power is the correctly rounded fp32 value (computed in
    float64), not numpy's fp32 ``power``, whose last bit depends on the CPU's SIMD path."""
    exps = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    powers = np.power(np.float64(base), exps.astype(np.float64)).astype(np.float32)
    return (np.float32(1.0) / powers / np.float32(scale)).astype(np.float32)


def rope_angles(positions, head_dim: int, base: float, scale: float = 1.0) -> np.ndarray:
    """The fp32 angles pos * inv_freq [T, D/2] (one fp32 rounding, as on the GPU)."""
    pos = np.asarray(positions, np.float32).reshape(-1)
    return (pos[:, None] * rope_inv_freq(head_dim, base, scale)[None, :]).astype(np.float32)


def rope_neox(x: np.ndarray, positions, base: float, scale: float = 1.0) -> np.ndarray:
    """NEOX RoPE (rotate halves: pairs (i, i + D/2)) of x [T, heads, D].

    ``positions``: the position of each row [T], or an int pos0 (row t is at pos0 + t).
    Angles in fp32 as transformers computes them, then sin/cos in float64."""
    x = np.asarray(x, np.float32)
    T, _, D = x.shape
    if np.ndim(positions) == 0:
        positions = np.arange(T) + int(positions)
    ang = rope_angles(positions, D, base, scale).astype(np.float64)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x1, x2 = x[..., :D // 2].astype(np.float64), x[..., D // 2:].astype(np.float64)
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1).astype(np.float32)


def kv_write(cache: np.ndarray, src: np.ndarray, pos0: int) -> np.ndarray:
    """A copy of ``cache`` [C, ...] with row t of ``src`` [T, ...] in slot (pos0 + t) mod C."""
    out = np.array(cache, copy=True)
    C = out.shape[0]
    for t in range(src.shape[0]):
        out[(pos0 + t) % C] = src[t]
    return out


def ring_positions(C: int, p_end: int) -> np.ndarray:
    """The key position held by each of the C slots after writing up to ``p_end`` (negative: empty)."""
    j = np.arange(C, dtype=np.int64)
    return p_end - np.mod(p_end - j, C)


def _attend(q, k, v, qpos, kpos, window: int, scale: float) -> np.ndarray:
    """Grouped-query attention in float64: q [T, Hq, D], k/v [S, Hkv, D] -> [T, Hq, D] fp32.

    Query t sees key s iff kpos[s] >= 0, kpos[s] <= qpos[t] and (window == 0 or kpos[s] > qpos[t] - window);
    a query that sees no key gets zeros."""
    T, Hq, D = q.shape
    Hkv = k.shape[1]
    if Hq % Hkv:
        raise ValueError(f"{Hq} query heads are not a multiple of {Hkv} kv heads")
    qpos, kpos = np.asarray(qpos, np.int64), np.asarray(kpos, np.int64)
    seen = (kpos[None, :] >= 0) & (kpos[None, :] <= qpos[:, None])
    if window:
        seen &= kpos[None, :] > qpos[:, None] - window
    used = seen.any(axis=0)             # keys no query sees are never read (they may hold anything)
    k, v, seen = k[used], v[used], seen[:, used]
    g = Hq // Hkv
    qh = q.astype(np.float64).transpose(1, 0, 2)                           # [Hq, T, D]
    kh = np.repeat(k.astype(np.float64), g, axis=1).transpose(1, 2, 0)     # [Hq, D, S]
    vh = np.repeat(v.astype(np.float64), g, axis=1).transpose(1, 0, 2)     # [Hq, S, D]
    scores = np.where(seen[None], (qh @ kh) * scale, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    p = np.exp(scores - np.where(np.isfinite(top), top, 0.0))
    total = p.sum(axis=-1, keepdims=True)
    out = (p @ vh) / np.where(total > 0, total, 1.0)
    return out.transpose(1, 0, 2).astype(np.float32)


def attention(q: np.ndarray, kcache: np.ndarray, vcache: np.ndarray, pos0: int, window: int,
              scale: float) -> np.ndarray:
    """Attention of the T queries at pos0 .. pos0+T-1 (q [T, Hq, D]) over the ring-buffer caches [C, Hkv, D]."""
    T = q.shape[0]
    kpos = ring_positions(kcache.shape[0], pos0 + T - 1)
    return _attend(q, kcache, vcache, pos0 + np.arange(T), kpos, window, scale)


def attention_dense(q: np.ndarray, k: np.ndarray, v: np.ndarray, positions, window: int,
                    scale: float) -> np.ndarray:
    """Attention over a plain sequence: keys k/v [S, Hkv, D] at positions 0..S-1, queries at ``positions``."""
    return _attend(q, k, v, positions, np.arange(k.shape[0]), window, scale)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in float64, returned as fp32."""
    x = np.asarray(x, np.float64)
    return (0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))).astype(np.float32)


def geglu(gu: np.ndarray) -> np.ndarray:
    """gu [T, 2F] (gate columns then up columns) -> gelu_tanh(gate) * up [T, F]."""
    F = gu.shape[-1] // 2
    return (gelu_tanh(gu[..., :F]).astype(np.float64) * gu[..., F:]).astype(np.float32)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.asarray(a, np.float32) + np.asarray(b, np.float32)).astype(np.float32)


def argmax(logits: np.ndarray) -> int:
    """Index of the largest logit; the lowest index among equal maxima."""
    return int(np.argmax(logits))


def topk(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest logits, descending, with their indices (the lower index first among equals)."""
    logits = np.asarray(logits, np.float32)
    order = np.argsort(-logits, kind="stable")[:k]
    return logits[order], order.astype(np.uint32)
