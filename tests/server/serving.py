"""Run `gemforge serve`'s application on 127.0.0.1 in a background thread, for tests."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

from gemforge.runtime.openai_api import Sampling
from gemforge.runtime.server import Api, listen, uvicorn_server

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 60


@contextlib.contextmanager
def running(model, model_id: str | None = None, defaults: Sampling = Sampling()) -> Iterator[tuple[Api, str]]:
    """The server on a free loopback port: yields (api, base_url "http://127.0.0.1:PORT/v1"); stops it after."""
    api = Api(model, model_id, defaults)
    sock = listen("127.0.0.1", 0)
    server = uvicorn_server(api, "warning", graceful_s=1)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield api, f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"
