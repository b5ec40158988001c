"""Token sampling on the host over logits (or the GPU's top-k candidates).

Greedy (temperature 0) never reaches this module's random path: the GPU's argmax
decides.  Otherwise: repetition penalty (CTRL-style: positive logits divided,
negative multiplied, for every token already in the context), temperature, top-k,
top-p, then a draw from a seeded generator, so a run with a seed is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GemforgeError

TOPK_MAX = 64   # the GPU top-k kernel's largest k


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_k: int = 0            # 0: no limit
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if not (self.temperature >= 0):
            raise GemforgeError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise GemforgeError(f"top_k must be >= 0, got {self.top_k}")
        if not (0 < self.top_p <= 1):
            raise GemforgeError(f"top_p must be in (0, 1], got {self.top_p}")
        if not (self.repetition_penalty > 0):
            raise GemforgeError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 and self.repetition_penalty == 1.0

    @property
    def gpu_candidates(self) -> int:
        """k for the GPU top-k path, or 0 when the full logits are needed on the host."""
        if self.greedy or self.repetition_penalty != 1.0 or not (0 < self.top_k <= TOPK_MAX):
            return 0
        return self.top_k


def apply_repetition_penalty(logits: np.ndarray, ids: np.ndarray, history, penalty: float) -> np.ndarray:
    if penalty == 1.0 or not len(history):
        return logits
    logits = logits.copy()
    seen = np.isin(ids, np.fromiter(set(history), dtype=np.int64))
    v = logits[seen]
    logits[seen] = np.where(v > 0, v / penalty, v * penalty)
    return logits


class Sampler:
    def __init__(self, params: SamplingParams):
        self.p = params
        self.rng = np.random.default_rng(params.seed)

    def pick(self, logits: np.ndarray, ids: np.ndarray | None = None, history=()) -> int:
        """Choose a token from ``logits`` (for token ``ids``; all tokens when None)."""
        logits = np.asarray(logits, dtype=np.float64)
        ids = np.arange(len(logits)) if ids is None else np.asarray(ids, dtype=np.int64)
        logits = apply_repetition_penalty(logits, ids, history, self.p.repetition_penalty)
        if self.p.temperature == 0:
            return int(ids[int(np.argmax(logits))])
        order = np.argsort(-logits, kind="stable")
        if self.p.top_k:
            order = order[:self.p.top_k]
        z = logits[order] / self.p.temperature
        prob = np.exp(z - z.max())
        prob /= prob.sum()
        if self.p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(prob), self.p.top_p) + 1)
            prob = prob[:keep] / prob[:keep].sum()
            order = order[:keep]
        return int(ids[order[self.rng.choice(len(prob), p=prob)]])
