"""`gemforge bench` on synthetic 270M-shaped weights (few tokens: this checks what it reports, not
speed): the per-matrix product profile accounts for every product dispatch of the decode step and
the prefill chunk, with rates computed from the matrices' own sizes, and greedy decode in bursts is
timed beside decode one token a submit."""
from __future__ import annotations

import pytest

from gemforge.runtime.bench import bench
from gemforge.runtime.config import model_config
from gemforge.runtime.synthetic import SyntheticStore


@pytest.fixture(scope="module")
def result(build):
    return bench(SyntheticStore("270m", "q8_0"), prompt_tokens=16, gen_tokens=3, reps=1, warmup_s=0.0, burst=2,
                 log=lambda s: None)


def test_products_per_matrix(result):
    cfg = model_config("270m")
    for key, T in (("profile_decode_products", 1), ("profile_prefill_products", 16)):
        prof = result[key]
        calls: dict[str, int] = {}
        for label, v in prof.items():
            role = label.split(" ")[1]
            calls[role] = calls.get(role, 0) + v["calls"]
            assert v["ms"] > 0 and v["GB_s" if T == 1 else "TFLOP_s"] > 0, (key, label, v)
        want = {"attn_q+attn_k+attn_v": cfg.layers, "attn_output": cfg.layers, "ffn_gate+ffn_up": cfg.layers,
                "ffn_down": cfg.layers}
        if T == 1:
            want["token_embd"] = 1          # the output head (tied to the embedding)
        assert calls == want, key
    # the products are part of the step: their times cannot exceed the step's
    step_ms = result["gpu_ms_decode_step"]
    assert sum(v["ms"] for v in result["profile_decode_products"].values()) < step_ms
    head = result["profile_decode_products"]
    (head_label,) = [k for k in head if " token_embd " in k]
    assert head_label.endswith(f"[{cfg.vocab}x{cfg.hidden}]")


def test_burst_decode_is_timed(result):
    assert result["decode_burst"] == 2
    b = result["decode_burst_tok_s"]
    assert b["median"] > 0 and len(b["samples"]) == 1
