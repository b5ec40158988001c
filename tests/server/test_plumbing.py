"""What the server passes to the model and how it reports the model's failures, on the stand-in model
(tests/server/standin.py), which records every call; and the exact server-sent-events wire format."""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from gemforge.runtime.openai_api import Sampling

from .serving import running
from .standin import BOS, OFFSET, StandIn

DEFAULTS = Sampling(max_tokens=3, top_k=7, repetition_penalty=1.05, stop=("never",))


@pytest.fixture(scope="module")
def served():
    """A stand-in behind a server whose defaults (the `serve` command's sampling flags) are DEFAULTS."""
    model = StandIn(delay=0.005)
    with running(model, "tiny", DEFAULTS) as (api, base_url):
        yield model, api, base_url


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served[2], api_key="unused", max_retries=0, timeout=60)


def test_parameters_reach_the_model(client, served):
    model = served[0]
    client.completions.create(model="tiny", prompt="Hi", max_tokens=2, temperature=0.7, top_p=0.5, seed=11,
                              stop=["x", "y"], extra_body={"top_k": 5, "repetition_penalty": 1.2})
    assert model.calls[-1] == dict(prompt=[BOS, ord("H") + OFFSET, ord("i") + OFFSET], max_tokens=2,
                                   temperature=0.7, top_k=5, top_p=0.5, repetition_penalty=1.2, seed=11,
                                   stop=["x", "y"], reuse_cache=False)
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                   max_completion_tokens=1)
    assert model.calls[-1]["max_tokens"] == 1


def test_left_out_parameters_take_the_server_defaults(client, served):
    model = served[0]
    r = client.completions.create(model="tiny", prompt="Hi")
    assert {k: v for k, v in model.calls[-1].items() if k != "prompt"} == dict(
        max_tokens=3, temperature=0.0, top_k=7, top_p=1.0, repetition_penalty=1.05, seed=None, stop=["never"],
        reuse_cache=False)
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"


def test_token_ids_are_used_as_given(client, served):
    client.completions.create(model="tiny", prompt=[5, 60, 61], max_tokens=1)
    assert served[0].calls[-1]["prompt"] == [5, 60, 61]


def test_harmless_unknown_parameters_are_ignored(client, served):
    model = served[0]
    want = client.completions.create(model="tiny", prompt="Hi", max_tokens=2).choices[0].text
    r = client.completions.create(model="tiny", prompt="Hi", max_tokens=2, n=1, user="someone", presence_penalty=0,
                                  frequency_penalty=0, extra_body={"not_an_openai_parameter": [1, 2]})
    assert r.choices[0].text == want
    assert model.calls[-1] == model.calls[-2]


def test_stop_string_finishes_with_stop(client, served):
    full = client.completions.create(model="tiny", prompt="Hi", max_tokens=3).choices[0].text
    stop = full.split()[1]
    r = client.completions.create(model="tiny", prompt="Hi", max_tokens=3, stop=stop)
    assert (r.choices[0].text, r.choices[0].finish_reason) == (full[:full.index(stop)], "stop")
    assert r.usage.completion_tokens == 2


def test_stream_wire_format(served):
    """Server-sent events exactly: `data: {json}` and a blank line each, then `data: [DONE]`."""
    with httpx.stream("POST", served[2] + "/chat/completions", timeout=60, json={
            "model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["cache-control"] == "no-cache"
        body = r.read().decode()
    events = body.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-2])
    chunks = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert [set(c) for c in chunks] == [{"id", "object", "created", "model", "choices"}] * 4
    assert [c["choices"][0] for c in chunks] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None},
        {"index": 0, "delta": {"content": chunks[1]["choices"][0]["delta"]["content"]}, "logprobs": None,
         "finish_reason": None},
        {"index": 0, "delta": {"content": chunks[2]["choices"][0]["delta"]["content"]}, "logprobs": None,
         "finish_reason": None},
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}]
    assert {(c["id"], c["object"], c["model"]) for c in chunks} == {(chunks[0]["id"], "chat.completion.chunk", "tiny")}


def test_a_model_error_before_any_text_is_400_streamed_or_not(served):
    for stream in (False, True):
        r = httpx.post(served[2] + "/completions", timeout=60,
                       json={"model": "tiny", "prompt": "FAIL_MODEL_ERROR", "stream": stream})
        assert r.status_code == 400 and r.headers["content-type"] == "application/json"
        assert r.json() == {"error": {"message": "the stand-in refuses this prompt (leave out FAIL_MODEL_ERROR)",
                                      "type": "invalid_request_error", "param": None, "code": "invalid_request"}}


def test_a_bug_is_500_with_the_error_shape_and_the_server_goes_on(client, served):
    r = httpx.post(served[2] + "/completions", timeout=60, json={"model": "tiny", "prompt": "FAIL_BUG"})
    assert r.status_code == 500
    e = r.json()["error"]
    assert (e["type"], e["code"], e["param"]) == ("server_error", "internal_error", None)
    assert e["message"].startswith("internal error in gemforge (RuntimeError: a bug in the stand-in)")
    assert client.completions.create(model="tiny", prompt="Hi", max_tokens=1).usage.completion_tokens == 1


def test_a_bug_mid_stream_ends_the_stream_with_an_error_event(client, served):
    with httpx.stream("POST", served[2] + "/completions", timeout=60,
                      json={"model": "tiny", "prompt": "FAIL_BUG", "stream": True}) as r:
        assert r.status_code == 200          # the first token came before the failure
        events = r.read().decode().split("\n\n")
    assert events[-1] == "" and "[DONE]" not in events[-2]
    assert json.loads(events[0][len("data: "):])["choices"][0]["text"]
    assert json.loads(events[-2][len("data: "):])["error"]["code"] == "internal_error"
    with pytest.raises(openai.APIError, match="a bug in the stand-in"):
        for _ in client.completions.create(model="tiny", prompt="FAIL_BUG", stream=True):
            pass
    assert httpx.get(served[2].removesuffix("/v1") + "/health").json()["status"] == "ok"
