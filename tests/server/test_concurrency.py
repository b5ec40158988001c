"""Concurrent clients: one model, requests served one at a time in arrival order, departures cancel.

On the stand-in model (tests/server/standin.py): these need dozens of requests, seconds each with the
real model on lavapipe; the stand-in also fails loudly if two threads ever generate at once."""
from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

TOKENS = 4
PROMPTS = ["The capital of France is", "Water boils at", "The largest planet is", "One, two, three,",
           "Roses are", "The speed of light is", "A haiku:", "Once there was"]


def ask(client, model_id, i: int) -> str:
    """Request i of 8: completion or chat, streamed or not, on prompt i."""
    prompt, chat, stream = PROMPTS[i], i % 2 == 1, i % 4 >= 2
    kw = dict(model=model_id, max_tokens=TOKENS, temperature=0, stream=stream)
    if chat:
        r = client.chat.completions.create(messages=[{"role": "user", "content": prompt}], **kw)
        return "".join(c.choices[0].delta.content or "" for c in r) if stream else r.choices[0].message.content
    r = client.completions.create(prompt=prompt, **kw)
    return "".join(c.choices[0].text for c in r) if stream else r.choices[0].text


def expected(standin, api, i: int) -> str:
    """Request i's text from the model directly."""
    prompt = PROMPTS[i]
    ids = standin.encode_chat([("user", prompt)]) if i % 2 == 1 else prompt
    with api.worker.lock:
        return "".join(standin.generate(ids, max_tokens=TOKENS, temperature=0))


def new_outcomes(api, seen: set) -> list:
    return sorted((o for k, o in api.worker.outcomes.items() if k not in seen), key=lambda o: o.seq)


@pytest.fixture
def api(standin_server):
    return standin_server[0]


@pytest.fixture
def base_url(standin_server):
    return standin_server[1]


@pytest.fixture
def client(standin_client):
    return standin_client


@pytest.fixture
def model_id(standin):
    return standin.config.name


def test_eight_concurrent_requests(client, model_id, standin, api):
    want = [expected(standin, api, i) for i in range(8)]
    assert len(set(want)) == 8
    seen = set(api.worker.outcomes)
    start = threading.Barrier(8)

    def run(i):
        start.wait()
        return ask(client, model_id, i)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(run, range(8)))
    assert got == want
    done = new_outcomes(api, seen)
    assert len(done) == 8 and not any(o.cancelled for o in done)
    # one at a time, in the order they were queued
    assert sorted(done, key=lambda o: o.started) == done
    assert all(a.ended <= b.started for a, b in zip(done, done[1:]))


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def raw_request(base_url: str, path: str, body: dict) -> socket.socket:
    """Send a request on a plain socket (the test decides when the client goes away)."""
    url = httpx.URL(base_url + path)
    data = json.dumps(body).encode()
    sock = socket.create_connection((url.host, url.port), timeout=60)
    sock.sendall(f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def test_clients_leaving_cancel_only_their_requests(client, model_id, standin, api, base_url):
    """One client leaves mid-stream (its generation stops at the next token), one leaves while queued
    (never generated); the two queued between them get exactly their answers."""
    long_tokens = 200
    want = [expected(standin, api, i) for i in (0, 1)]
    seen = set(api.worker.outcomes)
    stream = client.completions.create(model=model_id, prompt="Once upon a time", max_tokens=long_tokens,
                                       temperature=0, stream=True)
    pieces = iter(stream)
    first = next(pieces)                             # it runs now; the others queue behind it
    quitter = raw_request(base_url, "/completions", {"model": model_id, "prompt": "Never generated"})
    wait_until(lambda: api.worker.waiting == 1, "the quitter waits")
    with ThreadPoolExecutor(2) as pool:
        others = [pool.submit(ask, client, model_id, i) for i in (0, 1)]
        wait_until(lambda: api.worker.waiting == 3, "all three wait")
        quitter.close()                              # gives up before its turn
        wait_until(lambda: api.worker.waiting == 2, "the quitter's request is cancelled")
        next(pieces)
        stream.close()                               # goes away mid-stream
        assert [f.result() for f in others] == want
    done = new_outcomes(api, seen)
    assert len(done) == 4
    left = api.worker.outcomes[first.id]
    assert left is done[0] and left.cancelled and left.finish_reason is None
    assert 2 <= left.completion_tokens < long_tokens
    skipped = done[1]
    assert skipped.cancelled and skipped.completion_tokens == 0 and skipped.started == 0
    assert not any(o.cancelled for o in done[2:])


def test_stopping_the_server_ends_running_and_waiting_requests():
    """A running stream ends with an error event, a waiting request gets 503, and both stop at once."""
    from .serving import running
    from .standin import StandIn
    with httpx.Client(timeout=60) as http, ThreadPoolExecutor(1) as pool:
        with running(StandIn(delay=0.02)) as (api, base_url):
            stream = http.send(http.build_request("POST", base_url + "/completions", json={
                "model": "stand-in", "prompt": "Once upon a time", "max_tokens": 500, "stream": True}), stream=True)
            lines = stream.iter_lines()
            assert next(lines).startswith("data: {")
            waiting = pool.submit(httpx.post, base_url + "/completions", timeout=60,
                                  json={"model": "stand-in", "prompt": "Never generated"})
            wait_until(lambda: api.worker.waiting == 1, "the second request waits")
        # the server has stopped
        events = [line for line in lines if line]
        r = waiting.result()
    assert json.loads(events[-1][len("data: "):]) == {"error": {
        "message": "the server is shutting down", "type": "server_error", "param": None,
        "code": "server_shutting_down"}}
    assert r.status_code == 503 and r.json()["error"]["code"] == "server_shutting_down"
    running_job, waiting_job = sorted(api.worker.outcomes.values(), key=lambda o: o.seq)
    assert running_job.cancelled and 1 <= running_job.completion_tokens < 500
    assert waiting_job.cancelled and waiting_job.completion_tokens == 0
