"""numpy references for every op, written to read like the math in GEMMA3.md.

The op tests compare each GPU kernel with these; the model's numpy forward pass
(``tests/model``) is built from them too.  All fp32.
"""
from __future__ import annotations

import numpy as np


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Normalize the last axis: x / sqrt(mean(x^2) + eps) * w (w is GGUF's (1 + w))."""
    x = x.astype(np.float32)
    ms = np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True)
    return (x / np.sqrt(ms + eps) * w).astype(np.float32)
