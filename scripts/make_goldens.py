#!/usr/bin/env python3
"""Regenerate the reference fixtures from Hugging Face transformers, loading the same GGUF.

    pip install transformers accelerate 'torch==2.13.0'      # CPU build is enough
    python3 scripts/make_goldens.py [--model PATH.gguf] [--only tokenizer|model]

Writes
- tests/fixtures/tokenizer_cases.json: tricky strings and the ids transformers' GGUF
  tokenizer gives them (BOS first), with its decoding of the ids without BOS;
- tests/fixtures/goldens.json: per prompt, the ids, the top-10 logits (ids and fp32 values)
  at every position, and a 32-token greedy continuation (no stop tokens) with the margin
  between the two best logits at each step.  The model is Gemma3ForCausalLM with the GGUF's
  weights dequantized to fp32, fp32 compute, eager attention.

The long prompts are cut from tests/fixtures/apache-2.0-terms.txt (the terms of the
Apache License 2.0, paragraphs reflowed onto single lines).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TOP_K = 10
CONTINUATION = 32

TOKENIZER_CASES = [
    "", " ", "   ", "hello  world", "a" + " " * 31 + "b", " " * 40, "\n", "\n\n\n",
    "line1\nline2\r\nline3\r", "\t", "col1\tcol2\t\tcol3", "  leading and trailing  ", " leading space",
    "trailing space ", "I \u2764\ufe0f \U0001f980 and \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466!",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "Привет, мир! مرحبا بالعالم שלום עולם γειά σου κόσμε", "नमस्ते दुनिया สวัสดีชาวโลก",
    'def f(x):\n    return {"a": [1, 2, 3]}  # comment\n', 'int main(void) {\n\tprintf("%d\\n", 42);\n\treturn 0;\n}',
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", "<bos>text<eos>", "<unk>", "a<unk>b",
    "<pad><mask>[multimodal]", "<table><tr><td>1</td></tr></table>", "<start_of_turn", "3.14159 1,000,000 2024-01-01 0x1F 1e-6",
    "Hello!!! ??? ... --- *** ___ ~~~", "https://example.com/path?q=1&r=2 user@example.org",
    "\x00\x01 \U0001f9ec \u2603 \ue000 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "e\u0301 vs \u00e9", "\u2581 literal lower-one-eighth block \u2581\u2581",
    "a\u200bb\u200dc\u200fd", " \t \n \u00a0 \u3000 ", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    "# Title\n\n- item 1\n- item 2\n\n```python\nprint('hi')\n```", '{"key": "value", "list": [true, false, null]}',
    "a" * 40, "\n  \n    \n", "The capital of France is", "∑_{i=1}^{n} x_i² ≤ √(π·e) ∞ ≠ ∅",
]


def _terms(min_tokens: int, tok, skip: int = 0) -> str:
    """Whole paragraphs of the license terms, from paragraph ``skip`` on, until ``min_tokens`` tokens."""
    paras = (FIXTURES / "apache-2.0-terms.txt").read_text().strip().split("\n\n")[skip:]
    text = ""
    for p in paras:
        text = f"{text}\n\n{p}" if text else p
        if len(tok(text).input_ids) >= min_tokens:
            return text
    raise SystemExit(f"the license text has fewer than {min_tokens} tokens")


def prompts(tok) -> dict[str, str]:
    return {
        "france": "The capital of France is",
        "code": 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
        "chat": "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
        "multilingual": "Tokyo (東京) is the capital of Japan. 日本の首都は東京です。 Paris is the capital of",
        "story": ("Once upon a time, in a small village at the edge of a great forest, there lived an old "
                  "clockmaker named Elias. Every morning he opened his shop, wound every clock on the wall, and "
                  "waited for the first customer of the day. One winter morning, a girl walked in carrying"),
        "terms_300": _terms(300, tok, skip=18),     # > 256 tokens: crosses a prefill chunk boundary
        "terms_700": _terms(700, tok),              # > 600 tokens: the 512-token sliding window matters
    }


def load_hf(model: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d = Path(tempfile.mkdtemp(prefix="gemforge-goldens-"))
    (d / model.name).symlink_to(model.resolve())
    tok = AutoTokenizer.from_pretrained(d, gguf_file=model.name)
    lm = None

    def get_model():
        nonlocal lm
        if lm is None:
            lm = AutoModelForCausalLM.from_pretrained(d, gguf_file=model.name, dtype=torch.float32,
                                                      attn_implementation="eager").eval()
        return lm
    return tok, get_model


def source_info(model: Path) -> dict:
    import tokenizers
    import torch
    import transformers
    from gemforge.runtime.gguf_loader import file_sha256
    return {"model": model.name, "sha256": file_sha256(model), "transformers": transformers.__version__,
            "torch": torch.__version__, "tokenizers": tokenizers.__version__}


def make_tokenizer_cases(model: Path) -> None:
    tok, _ = load_hf(model)
    cases = []
    for text in TOKENIZER_CASES:
        ids = tok(text).input_ids
        assert ids[:1] == [2], f"transformers did not put BOS first for {text!r}"
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids[1:], skip_special_tokens=False)})
    out = {"source": source_info(model), "note": "ids: transformers AutoTokenizer from the GGUF, BOS first; "
           "decoded: its decode of the ids without BOS (special tokens kept)", "cases": cases}
    path = FIXTURES / "tokenizer_cases.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {path} ({len(cases)} cases)")


def make_model_goldens(model: Path) -> None:
    import torch
    tok, get_model = load_hf(model)
    lm = get_model()
    entries = []
    with torch.no_grad():
        for name, text in prompts(tok).items():
            ids = tok(text).input_ids
            out = lm(torch.tensor([ids]), use_cache=True)
            logits = out.logits[0].float().numpy()
            top = np.argsort(-logits, axis=-1, kind="stable")[:, :TOP_K]
            vals = np.take_along_axis(logits, top, axis=-1)
            past, step_logits = out.past_key_values, logits[-1]
            cont, margins = [], []
            for _ in range(CONTINUATION):
                best = np.argsort(-step_logits, kind="stable")[:2]
                cont.append(int(best[0]))
                margins.append(float(step_logits[best[0]] - step_logits[best[1]]))
                step = lm(torch.tensor([[cont[-1]]]), past_key_values=past, use_cache=True)
                past, step_logits = step.past_key_values, step.logits[0, -1].float().numpy()
            entries.append({"name": name, "text": text, "ids": ids,
                            "top_ids": top.astype(int).tolist(), "top_logits": vals.astype(np.float32).tolist(),
                            "greedy": cont, "greedy_margin": margins,
                            "greedy_text": tok.decode(cont, skip_special_tokens=False)})
            print(f"{name}: {len(ids)} tokens, top-1 {top[-1, 0]} ({vals[-1, 0]:.4f}), "
                  f"continuation {entries[-1]['greedy_text']!r}")
    out = {"source": source_info(model),
           "note": "transformers Gemma3ForCausalLM from the GGUF, weights dequantized to fp32, fp32 eager attention. "
                   "top_ids/top_logits [T][10] for every prompt position; greedy: 32 argmax tokens after the prompt "
                   "(stop tokens not applied), greedy_margin: best minus second-best logit at each step",
           "prompts": entries}
    path = FIXTURES / "goldens.json"
    path.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="the GGUF (default: gemforge's default model, assembled into the cache)")
    ap.add_argument("--only", choices=["tokenizer", "model"], help="regenerate one fixture only")
    args = ap.parse_args()
    if args.model is None:
        from gemforge.runtime.model_store import default_model_path
        args.model = default_model_path()
    if args.only in (None, "tokenizer"):
        make_tokenizer_cases(args.model)
    if args.only in (None, "model"):
        make_model_goldens(args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
