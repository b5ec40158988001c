"""Request parsing without a model: defaults, aliases, prompt forms and chat turns."""
from __future__ import annotations

import json

import pytest

from gemforge.runtime.openai_api import ApiError, Sampling, chat_turns, parse_request

DEFAULTS = Sampling(max_tokens=99, temperature=0.5, top_p=0.9, top_k=40, repetition_penalty=1.1, seed=3,
                    stop=("###",))


def parse(kind: str, **body):
    return parse_request(kind, json.dumps({"model": "m", **body}).encode(), DEFAULTS)


def test_left_out_parameters_take_the_server_defaults():
    assert parse("completion", prompt="Hi").sampling == DEFAULTS
    s = parse("completion", prompt="Hi", max_tokens=5, temperature=0, top_p=1, top_k=0, seed=None, stop=[]).sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.top_k, s.seed, s.stop) == (5, 0.0, 1.0, 0, 3, ())


def test_stop_forms_and_max_completion_tokens():
    assert parse("completion", prompt="Hi", stop="\n").sampling.stop == ("\n",)
    assert parse("completion", prompt="Hi", stop=["a", "", "b"]).sampling.stop == ("a", "b")
    chat = parse("chat", messages=[{"role": "user", "content": "x"}], max_completion_tokens=7, max_tokens=9)
    assert chat.sampling.max_tokens == 7


def test_prompt_forms():
    assert parse("completion", prompt="Hi").prompt == "Hi"
    assert parse("completion", prompt=["Hi"]).prompt == "Hi"
    assert parse("completion", prompt=[2, 9259]).prompt == (2, 9259)
    assert parse("completion", prompt=[[2, 9259]]).prompt == (2, 9259)
    with pytest.raises(ApiError) as e:
        parse("completion", prompt=[[2], [3]])
    assert (e.value.status, e.value.param, e.value.code) == (400, "prompt", "unsupported_parameter")
    with pytest.raises(ApiError):
        parse("completion", prompt=[2, True])


def test_chat_turns_follow_gemmas_template():
    turns = chat_turns([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  Hi \n"},
                        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": [
                            {"type": "text", "text": " What "}, {"type": "text", "text": "now?"}]}])
    assert turns == (("user", "Be brief.\n\nHi"), ("model", "Hello."), ("user", "Whatnow?"))
    assert chat_turns([{"role": "developer", "content": "Rules."}]) == (("user", "Rules."),)
    assert chat_turns([{"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}]) == (
        ("user", "S"), ("model", "A"))


def test_stream_options():
    r = parse("chat", messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True})
    assert r.stream and r.include_usage
    with pytest.raises(ApiError) as e:
        parse("chat", messages=[{"role": "user", "content": "x"}], stream_options={"include_usage": "yes"})
    assert e.value.param == "stream_options.include_usage"
