"""The Gemma 3 forward pass in numpy fp32, written to read like GEMMA3.md.

    x = embed(ids) * sqrt(hidden)
    per layer:  h   = x + post_attn_norm(W_o attn(rope(q_norm(W_q n)), rope(k_norm(W_k n)), W_v n))   n = attn_norm(x)
                out = h + post_ffn_norm(W_down(gelu_tanh(W_gate m) * W_up m))                           m = ffn_norm(h)
    logits = final_norm(x) @ embed.T

Built from the op references of this package (norm, attention: activations fp32; attention,
sin/cos and tanh in float64); matrix products are written out as ``x @ W.T``.  ``weights`` is anything with ``fp32(name)`` (a
WeightStore, a SyntheticStore) or a mapping name -> fp32 array, with GGUF tensor names.
Matches transformers (Gemma3ForCausalLM, fp32, eager attention) on the same GGUF to ~1e-4
in the logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..config import ModelConfig
from .attention import attention_dense, gelu_tanh, rope_neox
from .norm import rmsnorm

__all__ = ["forward", "greedy", "KVCache"]


@dataclass
class KVCache:
    """Keys and values of every position seen so far, per layer (for greedy decoding)."""
    keys: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    length: int = 0


class _Weights:
    def __init__(self, weights):
        self._w = weights
        self._memo: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        if name not in self._memo:
            w = self._w[name] if isinstance(self._w, Mapping) else self._w.fp32(name)
            self._memo[name] = np.asarray(w, dtype=np.float32)
        return self._memo[name]


def _layer(W: _Weights, cfg: ModelConfig, i: int, x: np.ndarray, pos: np.ndarray, cache: KVCache) -> np.ndarray:
    p = f"blk.{i}."
    T, eps = x.shape[0], cfg.eps
    glob = cfg.is_global(i)
    base, scale = (cfg.rope_global_base, cfg.rope_global_scale) if glob else (cfg.rope_local_base, 1.0)
    n = rmsnorm(x, W(p + "attn_norm.weight"), eps)
    q = (n @ W(p + "attn_q.weight").T).reshape(T, cfg.n_heads, cfg.head_dim)
    k = (n @ W(p + "attn_k.weight").T).reshape(T, cfg.n_kv_heads, cfg.head_dim)
    v = (n @ W(p + "attn_v.weight").T).reshape(T, cfg.n_kv_heads, cfg.head_dim)
    q = rope_neox(rmsnorm(q, W(p + "attn_q_norm.weight"), eps), pos, base, scale)
    k = rope_neox(rmsnorm(k, W(p + "attn_k_norm.weight"), eps), pos, base, scale)
    if i < len(cache.keys):
        cache.keys[i] = np.concatenate([cache.keys[i], k])
        cache.values[i] = np.concatenate([cache.values[i], v])
    else:
        cache.keys.append(k)
        cache.values.append(v)
    a = attention_dense(q, cache.keys[i], cache.values[i], pos, 0 if glob else cfg.window,
                        1.0 / math.sqrt(cfg.query_pre_attn_scalar))
    o = a.reshape(T, cfg.q_dim) @ W(p + "attn_output.weight").T
    h = x + rmsnorm(o, W(p + "post_attention_norm.weight"), eps)
    m = rmsnorm(h, W(p + "ffn_norm.weight"), eps)
    f = gelu_tanh(m @ W(p + "ffn_gate.weight").T) * (m @ W(p + "ffn_up.weight").T)
    return h + rmsnorm(f @ W(p + "ffn_down.weight").T, W(p + "post_ffw_norm.weight"), eps)


def forward(weights, config: ModelConfig, token_ids: Sequence[int], cache: KVCache | None = None,
            rows: Sequence[int] | slice | None = None) -> np.ndarray:
    """Logits [T, vocab] (fp32) for ``token_ids``; with ``cache``, they continue the positions in it.

    ``rows`` picks the positions whose logits are computed (default all)."""
    W = weights if isinstance(weights, _Weights) else _Weights(weights)
    cache = cache if cache is not None else KVCache()
    ids = np.asarray(token_ids, dtype=np.int64)
    pos = np.arange(cache.length, cache.length + len(ids))
    table = W("token_embd.weight")
    x = table[ids] * np.float32(math.sqrt(config.hidden))
    for i in range(config.layers):
        x = _layer(W, config, i, x, pos, cache)
    cache.length += len(ids)
    if rows is not None:
        x = x[rows]
    return rmsnorm(x, W("output_norm.weight"), config.eps) @ table.T


def greedy(weights, config: ModelConfig, token_ids: Sequence[int], n: int) -> tuple[list[int], np.ndarray]:
    """``n`` greedy tokens after ``token_ids`` (no stop tokens) and the logits of the prompt [T, vocab]."""
    W = _Weights(weights)
    cache = KVCache()
    logits = forward(W, config, token_ids, cache)
    out = [int(np.argmax(logits[-1]))]
    while len(out) < n:
        out.append(int(np.argmax(forward(W, config, [out[-1]], cache)[-1])))
    return out, logits
