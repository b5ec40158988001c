"""OpenAI's HTTP API as pure functions: request bodies in, response objects and stream chunks out.

``parse_request(kind, body, defaults)`` turns the raw body of ``/v1/completions`` (kind
"completion") or ``/v1/chat/completions`` (kind "chat") into a validated ``ApiRequest``; any
bad value raises ``ApiError`` naming the parameter, which renders as OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}``.  Unknown parameters are ignored, as
OpenAI-compatible servers do; known ones that would change the result and that gemforge
cannot honour (n > 1, logprobs, penalties, tools, ...) are refused rather than ignored.

Extensions beyond OpenAI's parameters, as llama.cpp's server has them: ``top_k`` and
``repetition_penalty``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Sequence


class ApiError(Exception):
    """A request the server refuses: HTTP ``status`` and OpenAI's error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass(frozen=True)
class Sampling:
    """What ``Model.generate`` takes besides the prompt; the server's defaults come from its CLI flags."""
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def kwargs(self) -> dict:
        return dict(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                    repetition_penalty=self.repetition_penalty, seed=self.seed, stop=list(self.stop))


@dataclass(frozen=True)
class ApiRequest:
    kind: str                            # "completion" | "chat"
    model: str
    sampling: Sampling
    stream: bool = False
    include_usage: bool = False          # stream_options.include_usage
    prompt: str | tuple[int, ...] = ""   # completion: text (BOS is added) or token ids (used as given)
    turns: tuple[tuple[str, str], ...] = ()   # chat: (role "user" | "model", text), system folded in


# -- validation helpers ----------------------------------------------------------------------------------------

def _type_error(name: str, want: str, value: Any) -> ApiError:
    return ApiError(400, f"'{name}' must be {want}, got {json.dumps(value)}", name, "invalid_type")


def _value_error(name: str, want: str, value: Any) -> ApiError:
    return ApiError(400, f"'{name}' must be {want}, got {json.dumps(value)}", name, "invalid_value")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(body: dict, name: str, default):
    v = body.get(name)
    if v is None:
        return default
    if not _is_int(v):
        raise _type_error(name, "an integer", v)
    return v


def _number(body: dict, name: str, default):
    v = body.get(name)
    if v is None:
        return default
    if not (_is_int(v) or isinstance(v, float)) or not math.isfinite(v):
        raise _type_error(name, "a number", v)
    return float(v)


def _bool(body: dict, name: str, default: bool) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _type_error(name, "true or false", v)
    return v


def _unsupported(name: str, what: str) -> ApiError:
    return ApiError(400, f"'{name}' is not supported by gemforge: {what}", name, "unsupported_parameter")


def _refuse_unsupported(body: dict, kind: str) -> None:
    """Parameters whose non-default values would change the result in ways gemforge cannot honour."""
    n = _int(body, "n", 1)
    if n != 1:
        raise (_unsupported("n", "one choice per request (n=1)") if n > 1 else _value_error("n", ">= 1", n))
    for name in ("presence_penalty", "frequency_penalty"):
        if _number(body, name, 0.0) != 0.0:
            raise _unsupported(name, "use the extension 'repetition_penalty' (> 1 discourages repeats)")
    if body.get("logit_bias"):
        raise _unsupported("logit_bias", "no per-token biases")
    if kind == "chat":
        if _bool(body, "logprobs", False) or body.get("top_logprobs") is not None:
            raise _unsupported("logprobs", "no log-probabilities")
        for name in ("tools", "functions"):
            if body.get(name):
                raise _unsupported(name, "no tool or function calling")
        fmt = body.get("response_format")
        if fmt is not None and fmt != {"type": "text"}:
            raise _unsupported("response_format", "plain text only ({\"type\": \"text\"})")
    else:
        if body.get("logprobs") is not None:
            raise _unsupported("logprobs", "no log-probabilities")
        if _bool(body, "echo", False):
            raise _unsupported("echo", "the prompt is not echoed")
        if body.get("suffix"):
            raise _unsupported("suffix", "no insertion (fill-in-the-middle)")
        best_of = _int(body, "best_of", 1)
        if best_of != 1:
            raise _unsupported("best_of", "one candidate per request (best_of=1)")


def _sampling(body: dict, kind: str, d: Sampling) -> Sampling:
    limit_name = "max_completion_tokens" if kind == "chat" and body.get("max_completion_tokens") is not None \
        else "max_tokens"
    max_tokens = _int(body, limit_name, d.max_tokens)
    if max_tokens < 1:
        raise _value_error(limit_name, ">= 1", max_tokens)
    temperature = _number(body, "temperature", d.temperature)
    if not 0 <= temperature <= 2:
        raise _value_error("temperature", "between 0 and 2", temperature)
    top_p = _number(body, "top_p", d.top_p)
    if not 0 < top_p <= 1:
        raise _value_error("top_p", "in (0, 1]", top_p)
    top_k = _int(body, "top_k", d.top_k)
    if top_k < 0:
        raise _value_error("top_k", ">= 0 (0 = no limit)", top_k)
    penalty = _number(body, "repetition_penalty", d.repetition_penalty)
    if not penalty > 0:
        raise _value_error("repetition_penalty", "> 0", penalty)
    seed = _int(body, "seed", d.seed)
    if seed is not None and seed < 0:
        raise _value_error("seed", "a non-negative integer", seed)
    stop = body.get("stop")
    if stop is None:
        stops = d.stop
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise _type_error("stop", "a string or a list of strings", stop)
    return replace(d, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                   repetition_penalty=penalty, seed=seed, stop=tuple(s for s in stops if s))


def _prompt(body: dict) -> str | tuple[int, ...]:
    if "prompt" not in body:
        raise ApiError(400, "'prompt' is required", "prompt", "missing_required_parameter")
    p = body["prompt"]
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]                                   # a batch of one prompt
    if isinstance(p, str):
        if not p:
            raise _value_error("prompt", "non-empty text", p)
        return p
    if isinstance(p, list) and p and all(_is_int(t) for t in p):
        return tuple(p)
    if isinstance(p, list) and len(p) > 1 and all(isinstance(x, (str, list)) for x in p):
        raise _unsupported("prompt", "one prompt per request, not a batch")
    raise _type_error("prompt", "a non-empty string or a non-empty list of token ids", p)


def _content(msg: dict, i: int) -> str:
    """A message's text: a string, or a list of text parts (each trimmed, as Gemma's chat template does)."""
    name = f"messages[{i}].content"
    c = msg.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        texts = []
        for part in c:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind and kind != "text":
                    raise _unsupported(name, f"text parts only, got a '{kind}' part")
                raise _type_error(name, "a string or a list of {\"type\": \"text\", \"text\": ...} parts", c)
            texts.append(part["text"].strip())
        return "".join(texts)
    raise _type_error(name, "a string or a list of text parts", c)


def chat_turns(messages: Any) -> tuple[tuple[str, str], ...]:
    """OpenAI messages as Gemma turns: roles user/model, a leading system (or developer) message
    prepended to the first user turn followed by a blank line, contents trimmed."""
    if not isinstance(messages, list) or not messages:
        raise _type_error("messages", "a non-empty list of messages", messages)
    system = None
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _type_error(f"messages[{i}]", "an object with 'role' and 'content'", m)
        role = m.get("role")
        if role in ("system", "developer"):
            if i != 0:
                raise ApiError(400, f"messages[{i}]: a {role} message must come first (Gemma has no system turn; "
                                    "gemforge prepends it to the first user message)", f"messages[{i}].role",
                               "invalid_value")
            system = _content(m, i)
        elif role in ("user", "assistant"):
            text = _content(m, i).strip()
            turns.append(("user" if role == "user" else "model", text))
        else:
            raise _value_error(f"messages[{i}].role", "'system', 'developer', 'user' or 'assistant'", role)
    if system is not None:
        if turns and turns[0][0] == "user":
            turns[0] = ("user", f"{system}\n\n{turns[0][1]}")
        else:
            turns.insert(0, ("user", system.strip()))
    return tuple(turns)


def parse_request(kind: str, raw: bytes, defaults: Sampling) -> ApiRequest:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}", None, "invalid_json")
    model = body.get("model")
    if model is None:
        raise ApiError(400, "'model' is required (GET /v1/models lists the one this server has)", "model",
                       "missing_required_parameter")
    if not isinstance(model, str):
        raise _type_error("model", "a string", model)
    _refuse_unsupported(body, kind)
    stream = _bool(body, "stream", False)
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise _type_error("stream_options", "an object", opts)
    include_usage = _bool({"stream_options.include_usage": (opts or {}).get("include_usage")},
                          "stream_options.include_usage", False)
    sampling = _sampling(body, kind, defaults)
    if kind == "chat":
        if "messages" not in body:
            raise ApiError(400, "'messages' is required", "messages", "missing_required_parameter")
        return ApiRequest(kind, model, sampling, stream, include_usage, turns=chat_turns(body["messages"]))
    return ApiRequest(kind, model, sampling, stream, include_usage, prompt=_prompt(body))


# -- responses ---------------------------------------------------------------------------------------------------

FINISH = {"stop": "stop", "length": "length", "context": "length"}   # Model.stats.finish_reason -> OpenAI's


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _envelope(req: ApiRequest, rid: str, created: int, chunk: bool) -> dict:
    obj = {"chat": ("chat.completion", "chat.completion.chunk"), "completion": ("text_completion", "text_completion")}
    return {"id": rid, "object": obj[req.kind][chunk], "created": created, "model": req.model}


def response(req: ApiRequest, rid: str, created: int, text: str, finish: str, use: dict) -> dict:
    """The whole (non-streamed) response."""
    if req.kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return {**_envelope(req, rid, created, False), "choices": [choice], "usage": use}


def chunk(req: ApiRequest, rid: str, created: int, text: str | None = None, finish: str | None = None,
          role: bool = False) -> dict:
    """One streamed chunk: the chat's opening (``role``), a piece of ``text``, or the ``finish`` chunk."""
    if req.kind == "chat":
        delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
    out = {**_envelope(req, rid, created, True), "choices": [choice]}
    if req.include_usage:
        out["usage"] = None
    return out


def usage_chunk(req: ApiRequest, rid: str, created: int, use: dict) -> dict:
    """The last chunk when ``stream_options.include_usage``: no choices, the counts."""
    return {**_envelope(req, rid, created, True), "choices": [], "usage": use}


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def model_list(model_ids: Sequence[str], created: int) -> dict:
    return {"object": "list", "data": [model_card(m, created) for m in model_ids]}


def model_card(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "gemforge"}
