"""A stand-in for ``Model`` in the server's plumbing tests (queueing, cancelling, parameters, failures).

The real 270M model needs seconds per request on lavapipe, too slow for dozens of concurrent and
cancelled requests; the server is what these tests examine, and it sees only this interface:
``generate`` (yields text, then ``stats``), ``tokenizer.encode``, ``encode_chat``, ``config.name``,
``engine.context``/``fmt`` and ``device.info``.  The text is a deterministic function of the prompt (and seed),
one word per token, ``delay`` seconds each.  It records every call's arguments and raises if two threads
ever generate at once.  Prompts containing ``FAIL_MODEL_ERROR`` raise a ModelError before the first
token; ``FAIL_BUG`` raises a RuntimeError after the first token.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

from gemforge.runtime.errors import ModelError

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo"]
BOS, OFFSET = 2, 10   # token ids: BOS, then byte b is id b + OFFSET


@dataclass
class Stats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    finish_reason: str = ""


class ByteTokenizer:
    vocab_size = 256 + OFFSET

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids = [b + OFFSET for b in text.encode()]
        return [BOS] + ids if add_bos else ids

    def decode(self, ids) -> str:
        return bytes(i - OFFSET for i in ids if i >= OFFSET).decode(errors="replace")


class StandIn:
    def __init__(self, delay: float = 0.02, context: int = 256):
        self.delay = delay
        self.tokenizer = ByteTokenizer()
        self.config = SimpleNamespace(name="stand-in")
        self.engine = SimpleNamespace(context=context, fmt="q8_0")
        self.device = SimpleNamespace(info=SimpleNamespace(name="stand-in device", is_software=True))
        self.stats = Stats()
        self.calls: list[dict] = []
        self._busy = threading.Lock()

    def encode_chat(self, turns) -> list[int]:
        text = "".join(f"<start_of_turn>{role}\n{t}<end_of_turn>\n" for role, t in turns)
        return [BOS] + self.tokenizer.encode(text + "<start_of_turn>model\n", add_bos=False)

    def generate(self, prompt, max_tokens=256, temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                 seed=None, stop=(), reuse_cache=False):
        if not self._busy.acquire(blocking=False):
            raise AssertionError("two threads generate at once")
        try:
            ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
            self.calls.append(dict(prompt=ids, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                                   top_p=top_p, repetition_penalty=repetition_penalty, seed=seed, stop=list(stop),
                                   reuse_cache=reuse_cache))
            text = self.tokenizer.decode(ids)
            if "FAIL_MODEL_ERROR" in text:
                raise ModelError("the stand-in refuses this prompt", "leave out FAIL_MODEL_ERROR")
            stats = self.stats = Stats(prompt_tokens=len(ids), finish_reason="length")
            h = (hash(tuple(ids)) + (seed or 0)) % 1_000_003
            out = ""
            for i in range(max_tokens):
                time.sleep(self.delay)
                stats.generated_tokens += 1
                piece = f" {WORDS[(h + i) % len(WORDS)]}{(h // len(WORDS) + i) % 100}"
                full = out + piece
                hits = [full.find(s) for s in stop if s and s in full]
                if hits:
                    stats.finish_reason = "stop"
                    yield full[len(out):min(hits)]
                    return
                out += piece
                yield piece
                if "FAIL_BUG" in text:
                    raise RuntimeError("a bug in the stand-in")
        finally:
            self._busy.release()
