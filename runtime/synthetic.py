"""Synthetic weights of the real Gemma 3 shapes, made directly in the device format.

Speed depends on shapes and formats, not on values, so benchmarks of the 1B-27B
shapes need no model file: the packed words are drawn at random (quantized formats:
random int8/int4 codes with small fp16 scales, so activations stay finite), with the
same tensor names and shapes a GGUF has.  Norm weights are 1.
"""
from __future__ import annotations

import zlib

import numpy as np

from . import formats
from .config import ModelConfig, model_config
from .gguf_loader import tensor_shapes
from .kernels import row_words

WEIGHT_STD = 0.02


def random_packed(fmt: str, N: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """Random words of a [N, K] matrix in ``fmt``'s device layout, with values of std ~WEIGHT_STD."""
    qw, sw = row_words(fmt, K)
    if fmt == "f32":
        return (rng.standard_normal((N, qw), np.float32) * WEIGHT_STD).view(np.uint32).reshape(-1)
    if fmt == "f16":
        w = (rng.standard_normal((N, 2 * qw), np.float32) * WEIGHT_STD).astype(np.float16)
        return w.view(np.uint32).reshape(-1)
    quants = rng.integers(0, 2**32, size=N * qw, dtype=np.uint32)
    # std of uniform int8 codes is ~73; of uniform codes 0..15 minus 8, ~4.6
    scale = WEIGHT_STD / (73.0 if fmt == "q8_0" else 4.6)
    scales = np.full(N * sw * 2, scale, np.float16).view(np.uint32)
    return np.concatenate([quants, scales])


class SyntheticStore:
    def __init__(self, config: ModelConfig | str, fmt: str, seed: int = 0):
        self.config = model_config(config) if isinstance(config, str) else config
        self.fmt = formats.check_format(fmt)
        self.path = f"synthetic:{self.config.name}"
        self.seed = seed
        self.shapes: dict[str, tuple[int, ...]] = tensor_shapes(self.config)

    @property
    def names(self) -> list[str]:
        return list(self.shapes)

    def _rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])

    def matrix(self, name: str) -> tuple[np.ndarray, int, int]:
        N, K = self.shapes[name]
        return random_packed(self.fmt, N, K, self._rng(name)), N, K

    def vector(self, name: str) -> np.ndarray:
        return np.ones(self.shapes[name], np.float32)

    def fp32(self, name: str) -> np.ndarray:
        """The exact values the device sees, dequantized (for numpy checks of small shapes)."""
        if len(self.shapes[name]) == 1:
            return self.vector(name)
        words, N, K = self.matrix(name)
        return formats.unpack(words, self.fmt, N, K)
