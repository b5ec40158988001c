"""Weight formats on the device, their packers and their numpy dequantizers.

A weight matrix ``W`` has shape ``[N, K]`` (N output rows, K inputs; GGUF order) and is
stored row-major with each row padded with zeros to ``Kp = round_up(K, 32)`` elements.
Everything is addressed in 32-bit words, so every device can read it without 8/16-bit
storage features:

| format | quants                                            | then scales                         | bytes/weight |
|--------|---------------------------------------------------|-------------------------------------|--------------|
| f32    | N*Kp floats                                       | -                                   | 4            |
| f16    | N*Kp halves, 2 per word (even element low)        | -                                   | 2            |
| q8_0   | N*Kp int8, 4 per word (element 4w+j in byte j)    | N*Kp/32 fp16 scales, 2 per word     | 1.0625       |
| q4_0   | N*Kp nibbles q in 0..15, 8 per word (el. 8w+j in nibble j), value (q-8)*d | N*Kp/32 fp16 scales | 0.5625 |

Each row's scales fill ``scale_words(K) = ceil(Kp/64)`` words: when Kp/32 is odd the row's last
word has a zero upper half, so every row's scales start on a word (no Gemma shape has odd Kp/32).

q8_0 is int8 symmetric (d = max|x| / 127) and q4_0 int4 symmetric with ggml's rounding
(d = m / -8 where m is the element of largest magnitude), both in blocks of 32 along K.
The scales start at word ``scale_offset(fmt, N, Kp)``.
"""
from __future__ import annotations

import numpy as np

from .errors import GemforgeError

FORMATS = ("f32", "f16", "q8_0", "q4_0")
BLOCK = 32


def round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise GemforgeError(f"unknown weight format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    return fmt


def scale_words(K: int) -> int:
    """Words of fp16 scales per row of a block format (2 per word, the row's last word padded)."""
    return (round_up(K, BLOCK) // BLOCK + 1) // 2


def bytes_per_row(fmt: str, K: int) -> int:
    Kp = round_up(K, BLOCK)
    return {"f32": 4 * Kp, "f16": 2 * Kp, "q8_0": Kp + 4 * scale_words(K),
            "q4_0": Kp // 2 + 4 * scale_words(K)}[check_format(fmt)]


def packed_words(fmt: str, N: int, K: int) -> int:
    Kp = round_up(K, BLOCK)
    return {"f32": N * Kp, "f16": N * Kp // 2, "q8_0": N * Kp // 4 + N * scale_words(K),
            "q4_0": N * Kp // 8 + N * scale_words(K)}[check_format(fmt)]


def scale_offset(fmt: str, N: int, K: int) -> int:
    """Word offset of the fp16 scales (0 for formats without scales)."""
    Kp = round_up(K, BLOCK)
    return {"f32": 0, "f16": 0, "q8_0": N * Kp // 4, "q4_0": N * Kp // 8}[check_format(fmt)]


def _pad(w: np.ndarray) -> np.ndarray:
    N, K = w.shape
    Kp = round_up(K, BLOCK)
    if Kp == K:
        return np.ascontiguousarray(w, dtype=np.float32)
    out = np.zeros((N, Kp), np.float32)
    out[:, :K] = w
    return out


def quantize_q8_0(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (int8 quants [N, Kp], fp16 scales [N, Kp/32])."""
    wp = _pad(w)
    N, Kp = wp.shape
    blocks = wp.reshape(N, Kp // BLOCK, BLOCK)
    amax = np.abs(blocks).max(axis=2)
    d = (amax / 127.0).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.rint(blocks * inv[..., None]), -127, 127).astype(np.int8)
    return q.reshape(N, Kp), d.astype(np.float16)


def quantize_q4_0(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (uint8 nibbles 0..15 [N, Kp], fp16 scales [N, Kp/32]); value = (q - 8) * d."""
    wp = _pad(w)
    N, Kp = wp.shape
    blocks = wp.reshape(N, Kp // BLOCK, BLOCK)
    idx = np.abs(blocks).argmax(axis=2)
    m = np.take_along_axis(blocks, idx[..., None], axis=2)[..., 0]
    d = (m / -8.0).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(15, (blocks * inv[..., None] + 8.5).astype(np.int8)).astype(np.uint8)
    return q.reshape(N, Kp), d.astype(np.float16)


def pack(w: np.ndarray, fmt: str) -> np.ndarray:
    """fp32 [N, K] -> uint32 words in the device layout of ``fmt``."""
    check_format(fmt)
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise GemforgeError(f"pack expects a 2-D weight matrix, got shape {w.shape}")
    if fmt == "f32":
        return _pad(w).reshape(-1).view(np.uint32)
    if fmt == "f16":
        return _pad(w).astype(np.float16).reshape(-1).view(np.uint32)
    if fmt == "q8_0":
        q, d = quantize_q8_0(w)
        return np.concatenate([q.reshape(-1).view(np.uint32), _scale_words(d)])
    q, d = quantize_q4_0(w)
    nib = q.reshape(-1, 8).astype(np.uint32)
    words = np.zeros(nib.shape[0], np.uint32)
    for j in range(8):
        words |= nib[:, j] << np.uint32(4 * j)
    return np.concatenate([words, _scale_words(d)])


def _scale_words(d: np.ndarray) -> np.ndarray:
    """fp16 scales [N, Kp/32] -> uint32 words, each row padded to whole words."""
    N, nb = d.shape
    if nb % 2:
        d = np.concatenate([d, np.zeros((N, 1), np.float16)], axis=1)
    return np.ascontiguousarray(d).reshape(-1).view(np.uint32)


def unpack(words: np.ndarray, fmt: str, N: int, K: int) -> np.ndarray:
    """The exact fp32 values the device computes with: device layout -> [N, K]."""
    check_format(fmt)
    Kp = round_up(K, BLOCK)
    words = np.asarray(words, dtype=np.uint32)
    if fmt == "f32":
        return words[:N * Kp].view(np.float32).reshape(N, Kp)[:, :K].copy()
    if fmt == "f16":
        return words[:N * Kp // 2].view(np.float16).astype(np.float32).reshape(N, Kp)[:, :K]
    so = scale_offset(fmt, N, K)
    sw = scale_words(K)
    d = words[so:so + N * sw].view(np.float16).astype(np.float32).reshape(N, 2 * sw)[:, :Kp // BLOCK]
    if fmt == "q8_0":
        q = words[:so].view(np.int8).astype(np.float32).reshape(N, Kp // BLOCK, BLOCK)
    else:
        w = words[:so]
        nib = np.stack([(w >> np.uint32(4 * j)) & np.uint32(15) for j in range(8)], axis=1).reshape(-1)
        q = (nib.astype(np.float32) - 8.0).reshape(N, Kp // BLOCK, BLOCK)
    return (q * d[..., None]).reshape(N, Kp)[:, :K]


def quantize_roundtrip(w: np.ndarray, fmt: str) -> np.ndarray:
    """What ``w`` becomes on the device in ``fmt`` (for numpy references)."""
    w = np.asarray(w, dtype=np.float32)
    return unpack(pack(w, fmt), fmt, *w.shape)
