"""The numpy reference forward pass against transformers' goldens (same GGUF, fp32)."""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.runtime.reference import forward, greedy

pytestmark = pytest.mark.model

FRANCE = " the capital of the country of France. It is the largest city in France and the second largest city"
LOGIT_TOL = 3e-4        # measured: at most 1.4e-4 on logits of magnitude ~20-30


def check_logits(logits: np.ndarray, golden: dict) -> None:
    """Our logits at the golden top-10 ids equal transformers' values; the argmax agrees."""
    top = np.asarray(golden["top_ids"])
    want = np.asarray(golden["top_logits"], np.float32)
    assert logits.shape[0] == top.shape[0]
    got = np.take_along_axis(logits, top, axis=1)
    err = np.abs(got - want)
    pos, k = np.unravel_index(int(err.argmax()), err.shape)
    assert err.max() <= LOGIT_TOL, (f"{golden['name']}: logit of token {top[pos, k]} at position {pos} is "
                                    f"{got[pos, k]:.6f}, transformers {want[pos, k]:.6f}")
    margin = want[:, 0] - want[:, 1]
    clear = margin > 2 * LOGIT_TOL
    assert np.array_equal(logits.argmax(axis=1)[clear], top[clear, 0]), f"{golden['name']}: argmax differs"


def test_golden_facts(goldens):
    g = goldens["france"]
    assert g["ids"] == [2, 818, 5279, 529, 7001, 563]
    assert g["top_ids"][-1][0] == 506 and abs(g["top_logits"][-1][0] - 19.09) < 0.01
    assert g["greedy_text"].startswith(FRANCE)
    lengths = {name: len(p["ids"]) for name, p in goldens.items()}
    assert len(lengths) >= 6
    assert max(lengths.values()) > 600                     # the 512-token sliding window matters
    assert any(256 < n < 512 for n in lengths.values())   # crosses a 256-row prefill chunk


def test_france_logits_and_greedy(f32_store, goldens, tokenizer):
    g = goldens["france"]
    tokens, logits = greedy(f32_store, f32_store.config, g["ids"], 32)
    check_logits(logits, g)
    assert tokens == g["greedy"]
    assert tokenizer.decode(tokens).startswith(FRANCE)


def test_long_prompt_logits(f32_store, goldens):
    """845 tokens: sliding-window layers see only the last 512 keys."""
    g = goldens["terms_700"]
    check_logits(forward(f32_store, f32_store.config, g["ids"]), g)


def test_a_window_bug_would_be_caught(f32_store, goldens):
    """The long prompt distinguishes sliding from global attention: a model without the window fails."""
    from dataclasses import replace
    g = goldens["terms_700"]
    cfg = replace(f32_store.config, window=0)                # every layer global
    logits = forward(f32_store, cfg, g["ids"], rows=slice(600, None))
    top = np.asarray(g["top_ids"])[600:]
    want = np.asarray(g["top_logits"], np.float32)[600:]
    assert np.abs(np.take_along_axis(logits, top, axis=1) - want).max() > 100 * LOGIT_TOL


@pytest.mark.slow
@pytest.mark.parametrize("name", ["code", "chat", "multilingual", "story", "terms_300"])
def test_every_golden_logits(f32_store, goldens, name):
    g = goldens[name]
    check_logits(forward(f32_store, f32_store.config, g["ids"]), g)


@pytest.mark.slow
def test_long_greedy_with_cache(f32_store, goldens):
    """Decoding past position 845 with the KV cache: the window slides token by token."""
    g = goldens["terms_700"]
    tokens, _ = greedy(f32_store, f32_store.config, g["ids"], 32)
    assert tokens == g["greedy"]
