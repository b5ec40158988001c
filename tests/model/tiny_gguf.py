"""Tiny Gemma 3 GGUF files written with gguf.GGUFWriter, and a matching model config.

The weights are random, in several GGUF tensor types, so the loader's conversion, its
cache and its errors can be tested in a fraction of a second without the real model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter
from gguf.quants import quantize

TINY = dict(name="gemma3-tiny", hidden=64, ffn=128, layers=2, n_heads=2, n_kv_heads=1, head_dim=32, window=8,
            query_pre_attn_scalar=32, rope_global_base=1000000.0, rope_local_base=10000.0, rope_global_scale=1.0,
            vocab=96, context=128)

# GGUF tensor type per tensor (suffix) -- every type quantize() can write
TYPES = {"token_embd": Q.Q8_0, "attn_q": Q.Q5_0, "attn_k": Q.F16, "attn_v": Q.F32, "attn_output": Q.Q4_0,
         "ffn_gate": Q.Q5_1, "ffn_up": Q.Q4_1, "ffn_down": Q.BF16}


def write_config(directory: Path, **overrides) -> Path:
    """configs/models-style directory holding the tiny config; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {**TINY, **overrides}
    (directory / f"{cfg['name']}.yaml").write_text(yaml.safe_dump(cfg))
    return directory


def tiny_tensors(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """fp32 tensors of the tiny model, matrices [N, K]; norm weights around 1 (GGUF's 1 + w)."""
    rng = np.random.default_rng(seed)
    H, F, D = cfg["hidden"], cfg["ffn"], cfg["head_dim"]
    qd, kd = cfg["n_heads"] * D, cfg["n_kv_heads"] * D
    out = {"token_embd.weight": rng.standard_normal((cfg["vocab"], H), np.float32),
           "output_norm.weight": 1 + 0.1 * rng.standard_normal(H, np.float32)}
    for i in range(cfg["layers"]):
        p = f"blk.{i}."
        for name, shape in (("attn_q", (qd, H)), ("attn_k", (kd, H)), ("attn_v", (kd, H)), ("attn_output", (H, qd)),
                            ("ffn_gate", (F, H)), ("ffn_up", (F, H)), ("ffn_down", (H, F))):
            out[p + name + ".weight"] = 0.05 * rng.standard_normal(shape, np.float32)
        for name, n in (("attn_norm", H), ("attn_q_norm", D), ("attn_k_norm", D), ("post_attention_norm", H),
                        ("ffn_norm", H), ("post_ffw_norm", H)):
            out[p + name + ".weight"] = 1 + 0.1 * rng.standard_normal(n, np.float32)
    return out


def write_gguf(path: Path, arch: str = "gemma3", skip: tuple[str, ...] = (), meta: dict | None = None,
               tensors: dict[str, np.ndarray] | None = None, tokens: list[str] | None = None, **overrides) -> Path:
    """A tiny GGUF of architecture ``arch``; ``skip`` leaves tensors out, ``meta`` overrides hyper-parameters."""
    cfg = {**TINY, **overrides}
    w = GGUFWriter(str(path), arch)
    hp = {"block_count": cfg["layers"], "embedding_length": cfg["hidden"], "feed_forward_length": cfg["ffn"],
          "context_length": cfg["context"], "attention.head_count": cfg["n_heads"],
          "attention.head_count_kv": cfg["n_kv_heads"], "attention.key_length": cfg["head_dim"],
          "attention.value_length": cfg["head_dim"], "attention.sliding_window": cfg["window"],
          "attention.layer_norm_rms_epsilon": 1e-6, "rope.freq_base": cfg["rope_global_base"], **(meta or {})}
    for key, value in hp.items():
        if isinstance(value, float):
            w.add_float32(f"{arch}.{key}", value)
        else:
            w.add_uint32(f"{arch}.{key}", value)
    if tokens is not None:
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_types([3 if t.startswith("<") and t.endswith(">") and not t.startswith("<0x") else
                           6 if t.startswith("<0x") else 1 for t in tokens])
        w.add_bos_token_id(2)
        w.add_eos_token_id(1)
        w.add_unk_token_id(3)
    for name, arr in (tensors or tiny_tensors(cfg)).items():
        if name in skip:
            continue
        kind = name.split(".")[-2]
        qtype = TYPES.get(kind, Q.F32) if arr.ndim == 2 else Q.F32
        data = quantize(arr, qtype)
        w.add_tensor(name, data, raw_shape=arr.shape if qtype in (Q.F32, Q.F16) else None,
                     raw_dtype=None if qtype in (Q.F32, Q.F16) else qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
