"""Every kind of bad request gets its status and OpenAI's error body, and the server keeps serving."""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from .conftest import CONTEXT

pytestmark = pytest.mark.model

CHAT = "/chat/completions"
COMPLETIONS = "/completions"
MESSAGES = [{"role": "user", "content": "Hi"}]


def post(base_url: str, path: str, body) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(base_url + path, content=content, headers={"Content-Type": "application/json"}, timeout=60)


def check(r: httpx.Response, status: int, param, code, words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    e = body["error"]
    assert (e["param"], e["code"]) == (param, code), e
    assert e["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    assert words in e["message"], e["message"]


# (path, body, status, param, code, words in the message); "MODEL" stands for the server's model id
BAD = {
    "malformed_json": (COMPLETIONS, b'{"model": "MODEL", "prompt": "Hi",', 400, None, "invalid_json", "not valid JSON"),
    "not_an_object": (COMPLETIONS, b'["MODEL", "Hi"]', 400, None, "invalid_json", "must be a JSON object"),
    "missing_model": (COMPLETIONS, {"prompt": "Hi"}, 400, "model", "missing_required_parameter", "'model' is required"),
    "unknown_model": (CHAT, {"model": "gpt-4o", "messages": MESSAGES}, 404, "model", "model_not_found",
                      "the model 'gpt-4o' does not exist"),
    "model_wrong_type": (CHAT, {"model": 3, "messages": MESSAGES}, 400, "model", "invalid_type", "must be a string"),
    "missing_prompt": (COMPLETIONS, {"model": "MODEL"}, 400, "prompt", "missing_required_parameter", "'prompt'"),
    "empty_prompt": (COMPLETIONS, {"model": "MODEL", "prompt": ""}, 400, "prompt", "invalid_value", "non-empty"),
    "prompt_wrong_type": (COMPLETIONS, {"model": "MODEL", "prompt": {"text": "Hi"}}, 400, "prompt", "invalid_type",
                          "'prompt' must be"),
    "token_id_outside_vocab": (COMPLETIONS, {"model": "MODEL", "prompt": [2, 10 ** 9]}, 400, "prompt",
                               "invalid_value", "outside the vocabulary"),
    "batch_of_prompts": (COMPLETIONS, {"model": "MODEL", "prompt": ["a", "b"]}, 400, "prompt",
                         "unsupported_parameter", "not a batch"),
    "missing_messages": (CHAT, {"model": "MODEL"}, 400, "messages", "missing_required_parameter", "'messages'"),
    "messages_wrong_type": (CHAT, {"model": "MODEL", "messages": "Hi"}, 400, "messages", "invalid_type",
                            "non-empty list"),
    "unknown_role": (CHAT, {"model": "MODEL", "messages": [{"role": "robot", "content": "Hi"}]}, 400,
                     "messages[0].role", "invalid_value", '"robot"'),
    "image_content": (CHAT, {"model": "MODEL", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "messages[0].content", "unsupported_parameter",
        "'image_url'"),
    "late_system_message": (CHAT, {"model": "MODEL", "messages": MESSAGES + [{"role": "system", "content": "x"}]},
                            400, "messages[1].role", "invalid_value", "must come first"),
    "negative_max_tokens": (COMPLETIONS, {"model": "MODEL", "prompt": "Hi", "max_tokens": -1}, 400, "max_tokens",
                            "invalid_value", "'max_tokens' must be >= 1, got -1"),
    "max_tokens_wrong_type": (COMPLETIONS, {"model": "MODEL", "prompt": "Hi", "max_tokens": "8"}, 400, "max_tokens",
                              "invalid_type", "must be an integer"),
    "max_tokens_float": (CHAT, {"model": "MODEL", "messages": MESSAGES, "max_completion_tokens": 2.5}, 400,
                         "max_completion_tokens", "invalid_type", "must be an integer"),
    "negative_temperature": (CHAT, {"model": "MODEL", "messages": MESSAGES, "temperature": -0.5}, 400, "temperature",
                             "invalid_value", "between 0 and 2"),
    "temperature_wrong_type": (CHAT, {"model": "MODEL", "messages": MESSAGES, "temperature": "hot"}, 400,
                               "temperature", "invalid_type", "must be a number"),
    "top_p_zero": (COMPLETIONS, {"model": "MODEL", "prompt": "Hi", "top_p": 0}, 400, "top_p", "invalid_value",
                   "in (0, 1]"),
    "top_p_above_one": (COMPLETIONS, {"model": "MODEL", "prompt": "Hi", "top_p": 1.5}, 400, "top_p",
                        "invalid_value", "in (0, 1]"),
    "negative_seed": (COMPLETIONS, {"model": "MODEL", "prompt": "Hi", "seed": -3}, 400, "seed", "invalid_value",
                      "non-negative"),
    "stop_wrong_type": (COMPLETIONS, {"model": "MODEL", "prompt": "Hi", "stop": 5}, 400, "stop", "invalid_type",
                        "a string or a list of strings"),
    "stream_wrong_type": (COMPLETIONS, {"model": "MODEL", "prompt": "Hi", "stream": "yes"}, 400, "stream",
                          "invalid_type", "true or false"),
    "n_above_one": (CHAT, {"model": "MODEL", "messages": MESSAGES, "n": 2}, 400, "n", "unsupported_parameter",
                    "n=1"),
    "presence_penalty": (CHAT, {"model": "MODEL", "messages": MESSAGES, "presence_penalty": 0.5}, 400,
                         "presence_penalty", "unsupported_parameter", "repetition_penalty"),
    "tools": (CHAT, {"model": "MODEL", "messages": MESSAGES, "tools": [{"type": "function"}]}, 400, "tools",
              "unsupported_parameter", "tool"),
    "prompt_over_the_context": (COMPLETIONS, {"model": "MODEL", "prompt": "word " * (CONTEXT + 10)}, 413, "prompt",
                                "context_length_exceeded", f"the context holds {CONTEXT}"),
    "chat_over_the_context": (CHAT, {"model": "MODEL", "messages": [{"role": "user", "content": "word " * CONTEXT}]},
                              413, "messages", "context_length_exceeded", "tokens; the context holds"),
}


def _with_model(body, model_id):
    if isinstance(body, bytes):
        return body.replace(b"MODEL", model_id.encode())
    return {k: (model_id if v == "MODEL" else v) for k, v in body.items()}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_request(base_url, model_id, api, kind):
    path, body, status, param, code, words = BAD[kind]
    before = len(api.worker.outcomes)
    check(post(base_url, path, _with_model(body, model_id)), status, param, code, words)
    assert len(api.worker.outcomes) == before, "a refused request must not reach the model"


def test_unknown_path_and_method(base_url):
    check(httpx.get(base_url + "/engines"), 404, None, "not_found", "no such endpoint: GET /v1/engines")
    check(httpx.get(base_url + "/models/nope"), 404, "model", "model_not_found", "'nope' does not exist")
    r = httpx.get(base_url + COMPLETIONS)
    check(r, 405, None, "method_not_allowed", "GET /v1/completions")
    assert r.headers["allow"] == "POST"


def test_the_openai_client_raises_its_typed_errors(client, model_id):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert e.value.status_code == 404 and e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model_id, prompt="Hi", temperature=-1)
    assert e.value.param == "temperature" and "between 0 and 2" in e.value.message
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(model=model_id, prompt="word " * (CONTEXT + 10), stream=True)
    assert e.value.status_code == 413 and e.value.code == "context_length_exceeded"


def test_still_healthy_after_bad_requests(base_url, client, model_id, api):
    for body in (b"\xff\xfe", b"", b"null", b'{"model": null}', b'{"model": "MODEL", "messages": [null]}'):
        assert post(base_url, CHAT, _with_model(body, model_id)).status_code == 400
    assert httpx.get(base_url.removesuffix("/v1") + "/health").json()["status"] == "ok"
    assert api.worker.alive and [m.id for m in client.models.list().data] == [model_id]
