"""`gemforge serve` on the command line: bad options and a taken port are one-line errors before the
model loads; the real command serves and stops on Ctrl-C."""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from gemforge.runtime import cli


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_taken_port_is_one_clear_error(capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        rc, out, err = run(capsys, "serve", "--port", str(port))
    assert rc == 1 and out == ""
    assert err.startswith(f"gemforge: error: cannot listen on 127.0.0.1:{port}: ")
    assert err.endswith("(fix: choose another --port, or stop the program that uses it)\n") and err.count("\n") == 1


@pytest.mark.parametrize("option, words", [(("--temperature", "-1"), "temperature must be >= 0, got -1.0"),
                                            (("--top-p", "0"), "top_p must be in (0, 1], got 0.0"),
                                            (("--max-tokens", "0"), "--max-tokens must be >= 1, got 0")])
def test_bad_default_sampling_is_one_clear_error(capsys, option, words):
    rc, out, err = run(capsys, "serve", "--port", "0", *option)
    assert (rc, out, err) == (1, "", f"gemforge: error: {words}\n")


@pytest.mark.model
def test_the_command_serves_until_interrupted(build):
    proc = subprocess.Popen([sys.executable, "-m", "gemforge.runtime.cli", "serve", "--port", "0", "--context", "64"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in proc.stderr:               # the address is printed once the model is loaded
            seen.append(line)
            m = re.search(r"OpenAI API at (http://127\.0\.0\.1:\d+/v1)$", line.strip())
            if m:
                break
        else:
            pytest.fail(f"`gemforge serve` exited with {proc.wait()}: {''.join(seen)}")
        base = m.group(1)
        health = httpx.get(base.removesuffix("/v1") + "/health", timeout=30).json()
        assert health["status"] == "ok" and health["context"] == 64
        r = httpx.post(base + "/completions", timeout=300, json={"model": health["model"], "prompt": "Hi",
                                                                 "max_tokens": 1})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 130
    assert proc.stdout.read() == ""            # the log, access lines included, is on stderr
    log = proc.stderr.read()
    assert "Traceback" not in log and log.endswith("gemforge: interrupted\n")
    assert '"GET /health HTTP/1.1" 200' in log and re.search(r"cmpl-\w+: \d+ prompt \+ [01] completion tokens", log)
