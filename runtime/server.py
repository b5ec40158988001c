"""`gemforge serve`: an OpenAI-compatible HTTP server for one model (Starlette on uvicorn).

    POST /v1/completions          POST /v1/chat/completions      (``"stream": true``: server-sent events)
    GET  /v1/models               GET  /v1/models/{id}           GET /health

The Model is not thread-safe, so one worker thread runs every generation, in the order the
requests arrived; the async handlers wait for its events.  A client that goes away cancels its
request: a queued one is skipped, a running one stops at its next token.  Errors have OpenAI's
shape ``{"error": {"message", "type", "param", "code"}}`` with status 400 (bad request), 404
(unknown model or path), 413 (prompt longer than the context, code ``context_length_exceeded``),
503 (the server is stopping: Ctrl-C ends running streams with an error event and answers waiting
requests so) and 500 only for a failure inside gemforge.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .cli import register
from .errors import GemforgeError, ModelError
from .model_cli import add_model_args, add_sampling_args, load_model, sampling_kwargs
from .openai_api import (FINISH, ApiError, ApiRequest, Sampling, chunk, error_body, model_card, model_list,
                         parse_request, response, sse, usage, usage_chunk)

log = logging.getLogger("gemforge.serve")

SERVE_EXAMPLES = """examples:
  gemforge serve                                  # the default model at http://127.0.0.1:8080/v1
  gemforge serve --port 8081 --weights f16 --context 4096
  gemforge serve --model ~/models/gemma-3-1b-it-Q8_0.gguf --model-id gemma-3-1b --max-tokens 512
  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"model": "gemma3-270m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 32}'"""

KEEP_OUTCOMES = 256   # finished requests remembered by id (for the log and for tests)
SHUTTING_DOWN = ApiError(503, "the server is shutting down", None, "server_shutting_down", type="server_error")


@dataclass
class Outcome:
    """How one request ended."""
    seq: int                    # position in the queue (0, 1, 2, ...)
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None   # OpenAI's 'stop' | 'length'; None when cancelled or failed
    cancelled: bool
    started: float = 0.0        # time.monotonic() on the worker; 0 when skipped
    ended: float = 0.0


class Job:
    """One request on its way through the worker; events go to the handler's asyncio queue:
    ("text", piece) ... then ("done", Outcome) or ("error", exception)."""

    def __init__(self, ids: list[int], sampling: Sampling, loop: asyncio.AbstractEventLoop, prefix: str):
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.ids, self.sampling, self.loop = ids, sampling, loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.seq = -1
        self.shutdown = False     # cancelled because the server is stopping (not by its client)
        self._cancel = threading.Event()

    def cancel(self, shutdown: bool = False) -> None:
        self.shutdown = self.shutdown or shutdown
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def emit(self, kind: str, value: Any) -> None:   # called on the worker thread
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:   # the event loop is closed: the server is gone, nobody listens
            pass


class Worker:
    """Runs jobs one at a time, first come first served, on one thread.  ``lock`` is held while the
    model generates: hold it to use the model from elsewhere while the server runs."""

    def __init__(self, model):
        self.model = model
        self.lock = threading.Lock()
        self.outcomes: OrderedDict[str, Outcome] = OrderedDict()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._current: Job | None = None
        self.closing = False

    def start(self) -> None:
        self.closing = False
        self._thread = threading.Thread(target=self._loop, name="gemforge-serve-worker", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Refuse new jobs, cancel the queued ones and stop the running one at its next token."""
        if self.closing:
            return
        self.closing = True
        with self._queue.mutex:
            jobs = [j for j in self._queue.queue if j is not None] + ([self._current] if self._current else [])
        for job in jobs:
            job.cancel(shutdown=True)
        self._queue.put(None)

    def join(self, timeout: float = 30.0) -> None:
        if self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    @property
    def waiting(self) -> int:
        """Requests queued whose clients still wait for them."""
        with self._queue.mutex:
            return sum(1 for job in self._queue.queue if job is not None and not job.cancelled)

    def submit(self, job: Job) -> None:
        if self.closing:
            raise SHUTTING_DOWN
        job.seq = next(self._seq)
        self._queue.put(job)

    def _loop(self) -> None:
        for job in iter(self._queue.get, None):
            self._current = job              # before the check: close() cancels it, or we see closing
            if self.closing:
                job.cancel(shutdown=True)
            self._run(job)
            self._current = None

    def _run(self, job: Job) -> None:
        out = Outcome(job.seq, len(job.ids), 0, None, True)
        if job.cancelled:                       # its client left while it waited, or the server stops
            self._finish(job, out)
            return
        error = None
        with self.lock:
            model = self.model
            before = model.stats
            out.started = time.monotonic()
            gen = model.generate(list(job.ids), **job.sampling.kwargs())
            try:
                for piece in gen:
                    job.emit("text", piece)
                    if job.cancelled:
                        break
                else:
                    out.finish_reason = FINISH[model.stats.finish_reason]
                    out.cancelled = False
            except Exception as e:   # reported to the client; a GemforgeError is the user's, others are bugs
                error = e
                if not isinstance(e, GemforgeError):
                    log.exception("generation failed (request %s)", job.id)
            finally:
                gen.close()
                out.ended = time.monotonic()
            if model.stats is not before:
                out.completion_tokens = model.stats.generated_tokens
        self._finish(job, out, error)

    def _finish(self, job: Job, out: Outcome, error: Exception | None = None) -> None:
        self.outcomes[job.id] = out
        while len(self.outcomes) > KEEP_OUTCOMES:
            self.outcomes.popitem(last=False)
        how = "failed" if error else ("cancelled" if out.cancelled else out.finish_reason)
        log.info("%s: %d prompt + %d completion tokens, %s", job.id, out.prompt_tokens, out.completion_tokens, how)
        if error:
            job.emit("error", error)
        else:
            job.emit("done", out)


def _api_error(e: Exception) -> ApiError:
    """An exception from a generation as the client sees it."""
    if isinstance(e, ModelError):
        return ApiError(400, str(e), None, "invalid_request")
    if isinstance(e, GemforgeError):
        return ApiError(500, str(e), None, "model_failure", type="server_error")
    return ApiError(500, f"internal error in gemforge ({type(e).__name__}: {e}); the server log has the traceback",
                    None, "internal_error", type="server_error")


class Api:
    """The endpoints, over one model and its worker."""

    def __init__(self, model, model_id: str | None = None, defaults: Sampling = Sampling()):
        self.model = model
        self.model_id = model_id or model.config.name
        self.defaults = defaults
        self.created = int(time.time())
        self.worker = Worker(model)

    # -- information ---------------------------------------------------------------------------------------
    async def health(self, request):
        from starlette.responses import JSONResponse
        if not self.worker.alive:
            return JSONResponse(error_body("the generation worker is not running", "server_error", None,
                                           "worker_stopped"), 503)
        info = self.model.device.info
        return JSONResponse({"status": "ok", "model": self.model_id, "weights": self.model.engine.fmt,
                             "context": self.model.engine.context, "device": info.name,
                             "hardware": not info.is_software, "waiting": self.worker.waiting})

    async def models(self, request):
        from starlette.responses import JSONResponse
        return JSONResponse(model_list([self.model_id], self.created))

    async def model_info(self, request):
        from starlette.responses import JSONResponse
        self._check_model(request.path_params["model_id"])
        return JSONResponse(model_card(self.model_id, self.created))

    def _check_model(self, name: str) -> None:
        if name != self.model_id:
            raise ApiError(404, f"the model '{name}' does not exist; this server has '{self.model_id}'", "model",
                           "model_not_found")

    # -- generation ----------------------------------------------------------------------------------------
    async def completions(self, request):
        return await self._generate(request, "completion")

    async def chat_completions(self, request):
        return await self._generate(request, "chat")

    def _encode(self, req: ApiRequest) -> list[int]:
        tok, ctx = self.model.tokenizer, self.model.engine.context
        if req.kind == "chat":
            ids, param = self.model.encode_chat(req.turns), "messages"
        elif isinstance(req.prompt, str):
            ids, param = tok.encode(req.prompt, add_bos=True), "prompt"
        else:
            ids, param = list(req.prompt), "prompt"
            bad = [t for t in ids if not 0 <= t < tok.vocab_size]
            if bad:
                raise ApiError(400, f"'prompt' has token id {bad[0]}, outside the vocabulary 0..{tok.vocab_size - 1}",
                               "prompt", "invalid_value")
        if len(ids) >= ctx:
            raise ApiError(413, f"the prompt has {len(ids)} tokens; the context holds {ctx}, which must leave room "
                                "for at least one generated token (the server's --context sets it)", param,
                           "context_length_exceeded")
        return ids

    async def _generate(self, request, kind: str):
        from starlette.responses import JSONResponse
        req = parse_request(kind, await request.body(), self.defaults)
        self._check_model(req.model)
        job = Job(self._encode(req), req.sampling, asyncio.get_running_loop(),
                  "chatcmpl" if kind == "chat" else "cmpl")
        self.worker.submit(job)
        watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
        try:
            event = await job.events.get()          # waits while the requests before it run
            if event[0] == "error":
                raise _api_error(event[1])
            if job.shutdown:
                raise SHUTTING_DOWN
            if req.stream:
                return _job_stream(job, self._events(req, job, event))
            pieces = []
            while event[0] == "text":
                pieces.append(event[1])
                event = await job.events.get()
            if event[0] == "error":
                raise _api_error(event[1])
            if job.shutdown:
                raise SHUTTING_DOWN
        except BaseException:
            job.cancel()
            raise
        finally:
            watcher.cancel()
        out: Outcome = event[1]
        return JSONResponse(response(req, job.id, job.created, "".join(pieces), out.finish_reason,
                                     usage(out.prompt_tokens, out.completion_tokens)))

    async def _events(self, req: ApiRequest, job: Job, event):
        """The server-sent events of a streamed response, from the job's first event on."""
        if req.kind == "chat":
            yield sse(chunk(req, job.id, job.created, role=True))
        while event[0] == "text":
            if event[1]:
                yield sse(chunk(req, job.id, job.created, text=event[1]))
            event = await job.events.get()
        if event[0] == "error" or job.shutdown:   # the status line is sent already: the error goes in the stream
            yield sse((_api_error(event[1]) if event[0] == "error" else SHUTTING_DOWN).body())
            return
        out: Outcome = event[1]
        yield sse(chunk(req, job.id, job.created, finish=out.finish_reason))
        if req.include_usage:
            yield sse(usage_chunk(req, job.id, job.created, usage(out.prompt_tokens, out.completion_tokens)))
        yield sse("[DONE]")

    # -- the application -----------------------------------------------------------------------------------
    def app(self):
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def api_error(request, e: ApiError):
            return JSONResponse(e.body(), e.status)

        async def http_error(request, e: HTTPException):
            code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
            what = f"{request.method} {request.url.path}"
            message = {404: f"no such endpoint: {what}", 405: f"method not allowed: {what}"}.get(e.status_code, e.detail)
            return JSONResponse(error_body(message, "invalid_request_error", None, code), e.status_code,
                                headers=e.headers)

        async def server_error(request, e: Exception):   # a bug: uvicorn logs the traceback too
            return JSONResponse(_api_error(e).body(), 500)

        @contextlib.asynccontextmanager
        async def lifespan(app):
            self.worker.start()
            try:
                yield
            finally:
                self.worker.close()
                await asyncio.to_thread(self.worker.join)

        routes = [Route("/health", self.health), Route("/v1/models", self.models),
                  Route("/v1/models/{model_id:path}", self.model_info),
                  Route("/v1/completions", self.completions, methods=["POST"]),
                  Route("/v1/chat/completions", self.chat_completions, methods=["POST"])]
        app = Starlette(routes=routes, lifespan=lifespan,
                        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: server_error})
        app.state.api = self
        return app


async def _cancel_on_disconnect(request, job: Job) -> None:
    """Cancel ``job`` when the client closes the connection (the request body is read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    job.cancel()


def _job_stream(job: Job, events):
    """A text/event-stream response that cancels ``job`` however it ends (done, client gone, shutdown)."""
    from starlette.responses import StreamingResponse
    inner = StreamingResponse(events, media_type="text/event-stream",
                              headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def asgi(scope, receive, send):
        try:
            await inner(scope, receive, send)
        finally:
            job.cancel()
    return asgi


# -- the command -------------------------------------------------------------------------------------------------

def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or one clear error (port taken, address not on this machine)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as e:
        raise GemforgeError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                            "choose another --port, or stop the program that uses it") from None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def log_config(level: str) -> dict:
    """uvicorn's logging, all of it on stderr (its access log goes to stdout by default), plus ours."""
    import copy

    from uvicorn.config import LOGGING_CONFIG
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["handlers"]["access"]["stream"] = "ext://sys.stderr"
    cfg["loggers"][log.name] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return cfg


def defaults_from_args(args) -> Sampling:
    kw = sampling_kwargs(args)
    from .sampling import SamplingParams
    SamplingParams(kw["temperature"], kw["top_k"], kw["top_p"], kw["repetition_penalty"], kw["seed"])  # checks
    if kw["max_tokens"] < 1:
        raise GemforgeError(f"--max-tokens must be >= 1, got {kw['max_tokens']}")
    return Sampling(**{**kw, "stop": tuple(kw["stop"])})


def cmd_serve(args) -> int:
    defaults = defaults_from_args(args)
    sock = listen(args.host, args.port)
    if not is_loopback(args.host):
        print(f"gemforge serve: warning: listening on {args.host}: the server has no authentication, anyone who "
              "can reach this address can use it", file=sys.stderr)
    model = load_model(args)
    api = Api(model, args.model_id, defaults)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"gemforge serve: {api.model_id} ({model.engine.fmt}, context {model.engine.context}) on "
          f"{model.device_summary}; OpenAI API at http://{host}:{sock.getsockname()[1]}/v1", file=sys.stderr)
    if run_until_signal(uvicorn_server(api, args.log_level), sock) == signal.SIGINT:
        raise KeyboardInterrupt   # after a clean shutdown: the CLI says "interrupted" and exits 130
    return 0


def uvicorn_server(api: Api, log_level: str = "info", graceful_s: float = 3.0):
    """A uvicorn server for ``api`` whose shutdown first ends the requests (503 or a stream's error
    event), so open streams do not hold it up until uvicorn's graceful-shutdown timeout."""
    import uvicorn
    server = uvicorn.Server(uvicorn.Config(api.app(), log_level=log_level, log_config=log_config(log_level),
                                           timeout_graceful_shutdown=graceful_s))
    uvicorn_shutdown = server.shutdown

    async def shutdown(sockets=None):
        api.worker.close()
        await uvicorn_shutdown(sockets=sockets)
    server.shutdown = shutdown
    return server


def run_until_signal(server, sock: socket.socket) -> int | None:
    """Serve until SIGINT or SIGTERM (a second SIGINT forces the exit); returns the first signal.
    (uvicorn itself would re-raise the signal inside asyncio, which prints a traceback.)"""
    caught: list[int] = []

    @contextlib.contextmanager
    def capture_signals():
        def handle(sig, frame):
            caught.append(sig)
            server.handle_exit(sig, frame)
        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    server.capture_signals = capture_signals
    server.run(sockets=[sock])
    return caught[0] if caught else None


def _setup_serve(p):
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--model-id", default=None,
                   help="the model name clients use (default: the model's config name, e.g. gemma3-270m)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="server log detail on stderr (default info: one line per request)")
    add_model_args(p)
    add_sampling_args(p)   # the defaults for requests that leave a parameter out


register("serve", "an OpenAI-compatible HTTP server (completions, chat, streaming) for one model", _setup_serve,
         cmd_serve, SERVE_EXAMPLES)
