"""One real model (the default Gemma 3 270M, q8_0) and one server on 127.0.0.1 per test session.

``reference(prompt, **sampling)`` runs the same request through the Python API (``Model.generate``)
while holding the server worker's lock, so it never overlaps a request the server is serving.
Generations stay short (a few tokens): lavapipe decodes a handful of tokens per second.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from .serving import running

CONTEXT = 512   # small KV cache: quick to allocate, and a prompt over it is cheap to build


@dataclass(frozen=True)
class Reference:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str      # OpenAI's: 'stop' | 'length'


@pytest.fixture(scope="session")
def model(build):
    from gemforge.runtime.model import Model
    return Model.load(weights="q8_0", context=CONTEXT)


@pytest.fixture(scope="session")
def server(model):
    """(api, base_url); the server stops at the end of the session."""
    with running(model) as (api, base_url):
        yield api, base_url


@pytest.fixture(scope="session")
def api(server):
    return server[0]


@pytest.fixture(scope="session")
def base_url(server):
    return server[1]


@pytest.fixture(scope="session")
def model_id(model):
    return model.config.name


@pytest.fixture
def client(base_url):
    import openai
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)


@pytest.fixture(scope="session")
def reference(model, api):
    """The Python API's answer to a prompt (text -> BOS + tokens, or token ids), cached per request."""
    from gemforge.runtime.openai_api import FINISH
    cache: dict = {}

    def run(prompt, **kw) -> Reference:
        key = (prompt if isinstance(prompt, str) else tuple(prompt), tuple(sorted(kw.items())))
        if key not in cache:
            with api.worker.lock:
                text = "".join(model.generate(prompt, **kw))
                s = model.stats
                cache[key] = Reference(text, s.prompt_tokens, s.generated_tokens, FINISH[s.finish_reason])
        return cache[key]
    return run


def gemma_chat(tokenizer, user: str) -> list[int]:
    """Gemma's chat format for one user turn, written out (not through the server's code)."""
    return tokenizer.encode(f"<bos><start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n", add_bos=False)
