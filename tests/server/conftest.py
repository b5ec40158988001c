"""Two servers on 127.0.0.1 per test session, each stopped at its end:

- ``server``: the real default model (Gemma 3 270M, q8_0), for the text the `openai` client gets and
  for the bad requests (which never reach the model).  ``reference(prompt, **sampling)`` runs the same
  request through the Python API while holding the worker's lock, so it never overlaps the server.
  lavapipe needs seconds per request, so there are few such requests and they are short.
- ``standin_server``: ``standin.StandIn`` in place of the model, for the plumbing that needs many
  requests: concurrency, order, cancellation, parameters, failures.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from .serving import running
from .standin import StandIn

CONTEXT = 512   # small KV cache: quick to allocate, and a prompt over it is cheap to build


@dataclass(frozen=True)
class Reference:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str      # OpenAI's: 'stop' | 'length'


def openai_client(base_url: str):
    import openai
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)


@pytest.fixture(scope="session")
def model(build):
    from gemforge.runtime.model import Model
    return Model.load(weights="q8_0", context=CONTEXT)


@pytest.fixture(scope="session")
def server(model):
    """(api, base_url) of the server over the real model."""
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
    return openai_client(base_url)


@pytest.fixture(scope="session")
def reference(model, api):
    """The Python API's answer (``Model.generate``) to a prompt: text (BOS is added) or token ids."""
    from gemforge.runtime.openai_api import FINISH

    def run(prompt, **kw) -> Reference:
        with api.worker.lock:
            text = "".join(model.generate(prompt, **kw))
            s = model.stats
            return Reference(text, s.prompt_tokens, s.generated_tokens, FINISH[s.finish_reason])
    return run


@pytest.fixture(scope="session")
def standin():
    return StandIn()


@pytest.fixture(scope="session")
def standin_server(standin):
    with running(standin) as (api, base_url):
        yield api, base_url


@pytest.fixture
def standin_client(standin_server):
    return openai_client(standin_server[1])


def gemma_chat(tokenizer, user: str) -> list[int]:
    """Gemma's chat format for one user turn, written out (not through the server's code)."""
    return tokenizer.encode(f"<bos><start_of_turn>user\n{user}<end_of_turn>\n<start_of_turn>model\n", add_bos=False)
