"""The official `openai` client against `gemforge serve`: the same text as the Python API, in OpenAI's shapes."""
from __future__ import annotations

import json

import httpx
import pytest

from .conftest import gemma_chat

pytestmark = pytest.mark.model

PROMPT = "The capital of France is"
QUESTION = "What is the capital of France?"
GREEDY = dict(max_tokens=8, temperature=0)


def test_models_and_health(client, base_url, model, model_id):
    assert [m.id for m in client.models.list().data] == [model_id]
    card = client.models.retrieve(model_id)
    assert (card.id, card.object, card.owned_by) == (model_id, "model", "gemforge")
    health = httpx.get(base_url.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" and health["model"] == model_id
    assert health["hardware"] == (not model.device.info.is_software)
    assert health["context"] == model.engine.context and health["weights"] == "q8_0"


def test_completion_matches_python_api(client, model_id, model, reference):
    want = reference(PROMPT, **GREEDY)
    r = client.completions.create(model=model_id, prompt=PROMPT, **GREEDY)
    assert r.object == "text_completion" and r.model == model_id and r.id.startswith("cmpl-")
    assert len(r.choices) == 1
    assert r.choices[0].text == want.text and want.text
    assert r.choices[0].finish_reason == want.finish_reason
    assert r.usage.prompt_tokens == len(model.tokenizer.encode(PROMPT)) == want.prompt_tokens
    assert r.usage.completion_tokens == want.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_from_token_ids(client, model_id, model, reference):
    ids = model.tokenizer.encode(PROMPT)
    r = client.completions.create(model=model_id, prompt=ids, **GREEDY)
    assert r.choices[0].text == reference(PROMPT, **GREEDY).text


def test_chat_matches_python_api(client, model_id, model, reference):
    want = reference(gemma_chat(model.tokenizer, QUESTION), **GREEDY)
    r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": QUESTION}], **GREEDY)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    msg = r.choices[0].message
    assert msg.role == "assistant" and msg.content == want.text and want.text
    assert r.choices[0].finish_reason == want.finish_reason
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (want.prompt_tokens, want.completion_tokens)


def test_chat_system_message_joins_the_first_user_turn(client, model_id, model, reference):
    system = "Answer in one word."
    want = reference(gemma_chat(model.tokenizer, f"{system}\n\n{QUESTION}"), **GREEDY)
    r = client.chat.completions.create(model=model_id, **GREEDY, messages=[
        {"role": "system", "content": system}, {"role": "user", "content": QUESTION}])
    assert r.choices[0].message.content == want.text
    assert r.usage.prompt_tokens == want.prompt_tokens


def test_streamed_completion(client, model_id, reference):
    want = reference(PROMPT, **GREEDY)
    chunks = list(client.completions.create(model=model_id, prompt=PROMPT, stream=True, **GREEDY))
    assert len({c.id for c in chunks}) == 1 and all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == want.text
    assert [c.choices[0].finish_reason for c in chunks] == [None] * (len(chunks) - 1) + [want.finish_reason]
    assert len(chunks) >= 3      # the text arrives in pieces, not at the end


def test_streamed_chat_with_usage(client, model_id, model, reference):
    want = reference(gemma_chat(model.tokenizer, QUESTION), **GREEDY)
    chunks = list(client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": QUESTION}],
                                                 stream=True, stream_options={"include_usage": True}, **GREEDY))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    first, *middle, last_choice, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content for c in middle) == want.text
    assert last_choice.choices[0].finish_reason == want.finish_reason and last_choice.choices[0].delta.content is None
    assert usage.choices == [] and usage.usage.completion_tokens == want.completion_tokens
    assert usage.usage.prompt_tokens == want.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_wire_format(base_url, model_id, reference):
    """Server-sent events exactly: `data: {json}` and a blank line each, then `data: [DONE]`."""
    want = reference(PROMPT, max_tokens=2, temperature=0)
    with httpx.stream("POST", base_url + "/completions", timeout=600, json={
            "model": model_id, "prompt": PROMPT, "max_tokens": 2, "temperature": 0, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = body.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-1])
    chunks = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == want.text
    assert set(chunks[0]) == {"id", "object", "created", "model", "choices"}
    assert set(chunks[0]["choices"][0]) == {"index", "text", "logprobs", "finish_reason"}


def test_stop_string(client, model_id, reference):
    """A stop string cuts the text before it and the finish reason is 'stop'."""
    full = reference(PROMPT, **GREEDY).text
    stop = full.split()[1]           # the second word of the greedy continuation
    want = reference(PROMPT, **GREEDY, stop=(stop,))
    assert want.text == full[:full.index(stop)] and want.finish_reason == "stop"
    r = client.completions.create(model=model_id, prompt=PROMPT, stop=[stop, "never appears"], **GREEDY)
    assert (r.choices[0].text, r.choices[0].finish_reason) == (want.text, "stop")
    streamed = client.completions.create(model=model_id, prompt=PROMPT, stop=stop, stream=True, **GREEDY)
    assert "".join(c.choices[0].text for c in streamed) == want.text


def test_seeded_sampling_matches_python_api(client, model_id, reference):
    sampling = dict(max_tokens=6, temperature=0.9, top_p=0.95, seed=7)
    want = reference(PROMPT, **sampling)
    r = client.completions.create(model=model_id, prompt=PROMPT, **sampling)
    assert r.choices[0].text == want.text


def test_harmless_unknown_parameters_are_ignored(client, model_id, reference):
    r = client.completions.create(model=model_id, prompt=PROMPT, max_tokens=2, temperature=0, n=1, user="someone",
                                  presence_penalty=0, extra_body={"not_an_openai_parameter": [1, 2]})
    assert r.choices[0].text == reference(PROMPT, max_tokens=2, temperature=0).text
