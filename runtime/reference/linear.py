"""numpy references of the matrix-product family and the embedding gather (fp32).

The weights are the values the device computes with: ``formats.unpack`` of the packed
words, or ``formats.quantize_roundtrip`` of fp32 weights.
"""
from __future__ import annotations

import numpy as np

__all__ = ["linear", "embed"]


def linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """y = x @ w.T: x [T, K] (or [K]) activations, w [N, K] dequantized weights -> [T, N] (or [N])."""
    return (np.asarray(x, np.float32) @ np.asarray(w, np.float32).T).astype(np.float32)


def embed(table: np.ndarray, ids, scale: float) -> np.ndarray:
    """Rows ``ids`` of the dequantized [vocab, K] table, times ``scale`` (Gemma: sqrt(hidden) in fp32)."""
    rows = np.asarray(table, np.float32)[np.asarray(ids, np.int64)]
    return (rows * np.float32(scale)).astype(np.float32)
