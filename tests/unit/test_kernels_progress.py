"""`gemforge kernels` draws a progress bar on a terminal and stays quiet otherwise."""
from __future__ import annotations

import os
import pty
import subprocess
import sys


def kernels(project, stderr) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gemforge.runtime.cli", *project.cli("--jobs", "2")],
                            stdout=subprocess.PIPE, stderr=stderr)


def test_progress_bar_on_a_terminal(project):
    master, slave = pty.openpty()
    proc = kernels(project, slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    err = b"".join(chunks).decode()
    assert "compiling kernels [" in err and "] 4/4 variants" in err, repr(err)
    assert "\nkernels: 4 variants, 4 compiled, 0 up to date" in err, repr(err)   # on a line of its own


def test_no_progress_bar_when_not_a_terminal(project):
    proc = kernels(project, subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out == b""
    assert err.decode().startswith("kernels: 4 variants, 4 compiled, 0 up to date (")
    assert err.count(b"\n") == 1 and b"\r" not in err
