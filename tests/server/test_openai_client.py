"""The official `openai` client against `gemforge serve` over the real model: the same text as the Python
API (greedy), in OpenAI's shapes, streamed and not."""
from __future__ import annotations

import httpx
import pytest

from .conftest import gemma_chat

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"
SYSTEM = "Be brief."
QUESTION = "Hi"           # short prompts: lavapipe's prefill cost grows with the 16/32/... bucket
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
GREEDY = dict(max_tokens=3, temperature=0)


@pytest.fixture(scope="module")
def completion_ref(reference):
    return reference(PROMPT, **GREEDY)


@pytest.fixture(scope="module")
def chat_ref(reference, model):
    # Gemma has no system turn: the system text and a blank line open the first user turn
    return reference(gemma_chat(model.tokenizer, f"{SYSTEM}\n\n{QUESTION}"), **GREEDY)


def test_models_and_health(client, base_url, model, model_id):
    assert [m.id for m in client.models.list().data] == [model_id]
    card = client.models.retrieve(model_id)
    assert (card.id, card.object, card.owned_by) == (model_id, "model", "gemforge")
    health = httpx.get(base_url.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" and health["model"] == model_id and health["waiting"] == 0
    assert health["hardware"] == (not model.device.info.is_software)
    assert health["context"] == model.engine.context and health["weights"] == "q8_0"


def test_completion(client, model_id, model, completion_ref):
    want = completion_ref
    assert want.text and want.completion_tokens == GREEDY["max_tokens"]
    r = client.completions.create(model=model_id, prompt=PROMPT, **GREEDY)
    assert r.object == "text_completion" and r.model == model_id and r.id.startswith("cmpl-")
    assert len(r.choices) == 1
    assert (r.choices[0].text, r.choices[0].finish_reason) == (want.text, "length")
    assert r.usage.prompt_tokens == len(model.tokenizer.encode(PROMPT)) == want.prompt_tokens
    assert r.usage.completion_tokens == want.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_completion(client, model_id, completion_ref):
    chunks = list(client.completions.create(model=model_id, prompt=PROMPT, stream=True, **GREEDY))
    assert len({c.id for c in chunks}) == 1 and all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == completion_ref.text
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + ["length"]
    assert len(chunks) >= 3      # the text arrives in pieces as it is made, not at the end


def test_chat(client, model_id, chat_ref):
    r = client.chat.completions.create(model=model_id, messages=MESSAGES, **GREEDY)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == model_id
    msg = r.choices[0].message
    assert msg.role == "assistant" and msg.content == chat_ref.text and chat_ref.text
    assert r.choices[0].finish_reason == chat_ref.finish_reason
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (chat_ref.prompt_tokens, chat_ref.completion_tokens)


def test_streamed_chat_with_usage(client, model_id, chat_ref):
    chunks = list(client.chat.completions.create(model=model_id, messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}, **GREEDY))
    assert all(c.object == "chat.completion.chunk" for c in chunks) and len({c.id for c in chunks}) == 1
    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content for c in middle) == chat_ref.text
    assert all(c.choices[0].finish_reason is None for c in [first, *middle])
    assert finish.choices[0].finish_reason == chat_ref.finish_reason and finish.choices[0].delta.content is None
    assert usage.choices == []
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (chat_ref.prompt_tokens,
                                                                          chat_ref.completion_tokens)
    assert all(c.usage is None for c in chunks[:-1])


def test_stop_string(client, model_id, completion_ref):
    """The text ends before the first stop string that appears, and the finish reason is 'stop'."""
    full = completion_ref.text
    stop = full.split()[1]           # the second word of the greedy continuation
    r = client.completions.create(model=model_id, prompt=PROMPT, stop=["never appears", stop], **GREEDY)
    assert (r.choices[0].text, r.choices[0].finish_reason) == (full[:full.index(stop)], "stop")
