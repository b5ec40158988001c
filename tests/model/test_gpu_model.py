"""The real Gemma 3 270M on the machine's Vulkan device against transformers' goldens.

Continuations are checked by teacher forcing: the logits of prompt + golden greedy tokens
are computed in one prefill, and the argmax at each continuation position must be the
golden next token.  That holds for every step iff free-running greedy decoding yields the
golden continuation; the decode path itself (one-token steps) is checked by the CLI test
and the bucket/chat equivalence tests.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gemforge.runtime.errors import GemforgeError

pytestmark = [pytest.mark.model, pytest.mark.gpu]

FRANCE = " the capital of the country of France. It is the largest city in France and the second largest city"
F32_TOL = 1e-2          # the bar for --weights f32
LONG_STRIDE = 7         # for prompts over 256 tokens, check every 7th position and the last 32
# transformers' own greedy path has near-ties (best minus second-best logit 0.01 at step 12 of
# "The capital of France is"), below the rounding noise of any 8- or 16-bit weight format.  A
# reduced-precision argmax may pick the runner-up at such a step and only there.
TIE = 0.1


@pytest.fixture(scope="session")
def models(model_path, build):
    from gemforge.runtime.model import Model
    cache = {}

    def get(fmt):
        if fmt not in cache:
            cache[fmt] = Model.load(model_path, fmt, context=2048, build_dir=build)
        return cache[fmt]
    return get


def checked_positions(n_prompt: int, n_total: int) -> list[int]:
    if n_prompt <= 256:
        prompt = list(range(n_prompt))
    else:
        prompt = sorted(set(range(0, n_prompt, LONG_STRIDE)) | set(range(n_prompt - 32, n_prompt)))
    return prompt + list(range(n_prompt, n_total))


def run_teacher_forced(model, g, n_greedy):
    ids = list(g["ids"]) + list(g["greedy"][:n_greedy])
    pos = checked_positions(len(g["ids"]), len(ids) - 1)
    return pos, model.logits(ids, pos)


@pytest.mark.parametrize("name", ["france", "code", "chat", "multilingual", "story", "terms_300", "terms_700"])
def test_f32_matches_goldens(models, goldens, name):
    """--weights f32: logits within 1e-2 at every checked position; greedy continuation identical."""
    g = goldens[name]
    model = models("f32")
    n = len(g["ids"])
    pos, logits = run_teacher_forced(model, g, 32)
    prompt_rows = [i for i, p in enumerate(pos) if p < n]
    top = np.asarray(g["top_ids"])[[pos[i] for i in prompt_rows]]
    want = np.asarray(g["top_logits"], np.float32)[[pos[i] for i in prompt_rows]]
    got = np.take_along_axis(logits[prompt_rows], top, axis=1)
    err = np.abs(got - want)
    r, k = np.unravel_index(int(err.argmax()), err.shape)
    assert err.max() <= F32_TOL, (f"{name}: logit of token {top[r, k]} at position {pos[prompt_rows[r]]}: "
                                  f"{got[r, k]:.5f} vs transformers {want[r, k]:.5f}")
    cont = logits[len(prompt_rows):]
    assert cont.argmax(axis=1).tolist() == g["greedy"][1:32], f"{name}: greedy continuation differs"
    assert int(logits[prompt_rows[-1]].argmax()) == g["greedy"][0]


@pytest.mark.parametrize("fmt", ["f16", "q8_0"])
def test_reduced_precision_agreement(models, goldens, fmt):
    """f16 and q8_0: top-1 identical at >= 98% of checked positions; each of the first 16 greedy steps
    picks the golden token, or (only where transformers' margin is below TIE) its runner-up."""
    model = models(fmt)
    agree = total = 0
    for name, g in goldens.items():
        n = len(g["ids"])
        pos, logits = run_teacher_forced(model, g, 16)
        am = logits.argmax(axis=1)
        golden_top1 = [g["top_ids"][p][0] if p < n else g["greedy"][p - n + 1] for p in pos]
        agree += int(np.sum(am == np.asarray(golden_top1)))
        total += len(pos)
        steps = [int(am[i]) for i, p in enumerate(pos) if p >= n - 1][:16]
        for s, (got, want, margin) in enumerate(zip(steps, g["greedy"], g["greedy_margin"])):
            assert got == want or margin < TIE, (
                f"{fmt} {name}: greedy step {s} picked {got}, transformers {want} with margin {margin:.3f}")
    assert agree / total >= 0.98, f"{fmt}: top-1 agreement {agree}/{total} = {agree / total:.3f} < 0.98"
    print(f"{fmt}: top-1 agreement {agree}/{total} = {agree / total:.4f}")


def test_cli_france_f32(model_path, build):
    """The issue's command prints the golden continuation (and a summary on stderr)."""
    cmd = [sys.executable, "-m", "gemforge.runtime.cli", "run", "--model", str(model_path), "--prompt",
           "The capital of France is", "--weights", "f32", "--temperature", "0", "--max-tokens", "20"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip("\n") == FRANCE
    summary = out.stderr.strip().splitlines()[-1]
    assert "prompt tokens" in summary and "decode" in summary and "placement vulkan" in summary
    assert ("hardware" in summary) or ("SOFTWARE" in summary)
    # the prefill matrix product it ran, and why (lavapipe: the portable one, lacking cooperative matrix)
    assert "prefill: cooperative-matrix matmul" in summary or "prefill: portable matmul (" in summary
    # and what the decode products compute with (f32 weights: fp32 x, no integer-dot kernel for them)
    assert "decode products: fp32 x (f32 has no integer-dot kernel)" in summary


def test_buckets_and_chunks_give_the_same_tokens(models, goldens):
    """A prompt prefilled in one 256-row chunk + a 64-bucket tail, or in 16-row chunks, generates the same."""
    model = models("q8_0")
    ids = goldens["terms_300"]["ids"]
    outs = []
    for chunk in (256, 16, 100):
        model.prefill_chunk = chunk
        "".join(model.generate(ids, max_tokens=8))
        outs.append(list(model.last_tokens))
    model.prefill_chunk = 256
    assert outs[0] == outs[1] == outs[2], outs
    assert len(outs[0]) == 8


def greedy_logits(engine, ids, steps: int) -> np.ndarray:
    """[steps, vocab]: the logits of ``steps`` greedy decode steps after prefilling ``ids``, one a submit."""
    engine.reset()
    engine.prefill(ids, "argmax")
    tok, out = engine.read_argmax(), []
    for _ in range(steps):
        engine.decode(tok, "logits")
        out.append(engine.read_logits().copy())
        tok = int(out[-1].argmax())
    return np.stack(out)


def test_decode_folds_agree(models, tokenizer):
    """Every placement of the decode step's residual add + norm pairs and GeGLUs (Engine.set_folds: folded
    into the product before or after, or a dispatch of its own) gives the logits of the all-separate
    step within fp32 summation-order noise, and the same greedy tokens."""
    engine = models("q8_0").engine
    ids = tokenizer.encode("The capital of France is")

    def run():
        return greedy_logits(engine, ids, 3)
    try:
        assert engine.set_folds("separate", "separate") == ("separate", "separate")
        base = run()
        for norms, geglu in (("before", "before"), ("after", "after"), ("after", "separate"),
                             ("separate", "after"), ("after", "before")):
            assert engine.set_folds(norms, geglu) == (norms, geglu)
            got = run()
            err = np.abs(got - base).max() / np.abs(base).max()
            assert err < 1e-4, f"norms {norms}, geglu {geglu}: logits differ by {err:.2e} of max |logit|"
            assert got.argmax(axis=1).tolist() == base.argmax(axis=1).tolist(), (norms, geglu)
        with pytest.raises(GemforgeError, match="decode geglu 'after' does not fit"):
            engine.set_folds("before", "after")     # no variant folds a norm before and the GeGLU after
    finally:
        engine.set_folds()


def test_decode_qk_fused_agrees(models, tokenizer):
    """Decode with qk_rope folded into attention (attention_qk: one dispatch a layer) gives the logits
    of the two-dispatch step within fp32 noise, the same greedy tokens, and a step shorter by one
    dispatch per layer."""
    engine = models("q8_0").engine
    ids = tokenizer.encode("The capital of France is")

    def run():
        return greedy_logits(engine, ids, 4), engine._step(1, "logits").names
    try:
        engine.set_decode_qk("separate")
        base, names_sep = run()
        engine.set_decode_qk("fused")
        got, names = run()
    finally:
        engine.set_decode_qk("fused")
    assert len(names_sep) - len(names) == engine.cfg.layers
    assert not any(n.startswith("qk_rope") for n in names)
    err = np.abs(got - base).max() / np.abs(base).max()
    assert err < 1e-5, f"fused q/k decode logits differ by {err:.2e} of max |logit|"
    assert got.argmax(axis=1).tolist() == base.argmax(axis=1).tolist()
    with pytest.raises(GemforgeError, match="decode q/k"):
        engine.set_decode_qk("both")


def test_chat_cache_reuse_equals_recompute(models):
    model = models("q8_0")
    tok = model.tokenizer
    turn1 = tok.encode("<start_of_turn>user\nName a colour.<end_of_turn>\n<start_of_turn>model\n")
    "".join(model.generate(turn1, max_tokens=6, reuse_cache=True))
    reply = list(model.last_tokens)
    turn2 = turn1 + reply + [model.config.end_of_turn_id] + tok.encode(
        "\n<start_of_turn>user\nAnd another?<end_of_turn>\n<start_of_turn>model\n", add_bos=False)
    "".join(model.generate(turn2, max_tokens=6, reuse_cache=True))
    reused, reused_prompt = list(model.last_tokens), model.stats.prompt_tokens
    "".join(model.generate(turn2, max_tokens=6, reuse_cache=False))
    fresh, fresh_prompt = list(model.last_tokens), model.stats.prompt_tokens
    assert reused_prompt < fresh_prompt == len(turn2)     # the cache really was reused
    assert reused == fresh


def test_decode_burst_equals_one_token_at_a_time(models, tokenizer):
    """Engine.decode_burst (n greedy steps in one submit, each argmax fed to the next step on the GPU)
    gives the tokens, the position and the last step's logits of n single-token steps, bit for bit."""
    engine = models("q8_0").engine
    ids = tokenizer.encode("The capital of France is")
    n = 5
    engine.reset()
    engine.prefill(ids, "argmax")
    tok = first = engine.read_argmax()
    single = []
    for i in range(n):
        engine.decode(tok, "logits" if i == n - 1 else "argmax")
        tok = int(engine.read_logits().argmax()) if i == n - 1 else engine.read_argmax()
        single.append(tok)
    want_logits, want_pos = engine.read_logits().copy(), engine.pos
    engine.reset()
    engine.prefill(ids, "argmax")
    assert engine.read_argmax() == first
    assert engine.decode_burst(first, n) == single
    assert engine.pos == want_pos == len(ids) + n
    np.testing.assert_array_equal(engine.read_logits(), want_logits)
    with pytest.raises(GemforgeError, match="outside 1..32"):
        engine.decode_burst(first, 33)


def test_generate_in_bursts(models):
    """Model.generate decodes greedy tokens in bursts: any burst size gives the text of one token a
    submit; a stop inside a burst leaves the cache at the last token taken, so the chat continues
    from it exactly as a fresh run of the same tokens does."""
    model = models("q8_0")
    eng = model.engine
    prompt = model.tokenizer.encode("<start_of_turn>user\nName three colours.<end_of_turn>\n<start_of_turn>model\n")
    runs = {}
    try:
        for burst in (1, 3, 8):
            model.burst = burst
            text = "".join(model.generate(prompt, max_tokens=10))
            runs[burst] = (text, list(model.last_tokens))
            assert eng.pos == len(model._history) == len(prompt) + 9     # the 10th token is not decoded
        assert runs[1] == runs[3] == runs[8]
        stop = model.tokenizer.decode(runs[1][1][4:5])      # the 5th token's text: a stop inside a burst of 8
        cut = {}
        for burst in (1, 8):
            model.burst = burst
            cut[burst] = ("".join(model.generate(prompt, max_tokens=10, stop=[stop])), list(model.last_tokens))
            # the token that completed the stop string was taken but never decoded
            assert eng.pos == len(model._history) == len(prompt) + len(model.last_tokens) - 1
        assert cut[1] == cut[8] and len(cut[8][1]) <= 5
        more = model.tokenizer.encode(" and", add_bos=False)
        turn2 = prompt + cut[8][1] + more
        reused = "".join(model.generate(turn2, max_tokens=6, reuse_cache=True))
        assert model.stats.prompt_tokens == 1 + len(more)     # the cache held all but the stop token and " and"
        fresh = "".join(model.generate(turn2, max_tokens=6, reuse_cache=False))
        assert reused == fresh
    finally:
        model.burst = 8


def test_sampling_is_reproducible_with_a_seed(models):
    model = models("q8_0")
    a = "".join(model.generate("Once upon a time", max_tokens=8, temperature=0.9, top_p=0.9, seed=5))
    b = "".join(model.generate("Once upon a time", max_tokens=8, temperature=0.9, top_p=0.9, seed=5))
    c = "".join(model.generate("Once upon a time", max_tokens=8, temperature=0.9, top_k=40, seed=5))
    d = "".join(model.generate("Once upon a time", max_tokens=8, temperature=0.9, top_k=40, seed=5))
    assert a == b and c == d


def test_stop_string(models):
    model = models("q8_0")
    text = "".join(model.generate("The capital of France is", max_tokens=20, stop=["France"]))
    assert text == " the capital of the country of "
    assert model.stats.finish_reason == "stop"


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "gemforge.runtime.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args,needle", [
    (["--prompt", ""], "prompt is empty"),
    (["--prompt", "word " * 80, "--context", "32"], "context"),
    (["--prompt", "hi", "--model", "/nonexistent/model.gguf"], "/nonexistent/model.gguf"),
])
def test_cli_bad_input_is_one_line(model_path, args, needle):
    out = _cli("run", *args) if "--model" in args else _cli("run", "--model", str(model_path), *args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert needle in out.stderr
    assert out.stderr.strip().splitlines()[0].startswith("gemforge: error:")


def test_cli_unknown_weight_format(model_path):
    out = _cli("run", "--model", str(model_path), "--prompt", "hi", "--weights", "q3_k")
    assert out.returncode == 2 and "Traceback" not in out.stderr and "q3_k" in out.stderr
