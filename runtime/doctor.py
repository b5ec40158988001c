"""`gemforge doctor`: what this machine has, what is missing, and how to get it."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import GemforgeError
from .paths import build_dir


def _line(ok: bool | None, what: str, detail: str, fix: str = "") -> str:
    mark = {True: "ok  ", False: "MISS", None: "info"}[ok]
    return f"[{mark}] {what}: {detail}" + (f"\n       fix: {fix}" if fix and not ok else "")


def _tool_version(cmd: list[str]) -> str | None:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "present"
    except (OSError, subprocess.SubprocessError):
        return "present (version unknown)"


def doctor(require_hardware: bool = False) -> int:
    lines = []
    problems = 0
    # Vulkan devices
    try:
        from .vulkan import choose_device, list_devices
        devs = list_devices()
        if not devs:
            raise GemforgeError("no Vulkan device", "install mesa-vulkan-drivers or your GPU driver")
        chosen = choose_device()
        for d in devs:
            tag = " <- used" if d.index == chosen.index else ""
            lines.append(_line(True, f"vulkan device {d.index}", f"{d.describe()}{tag}; Vulkan {d.api_version}; "
                               f"driver {d.driver}; max buffer {d.max_storage_buffer_range / 2**20:.0f} MiB; "
                               f"shared mem {d.max_shared_memory // 1024} KiB; subgroup {d.subgroup_size}; "
                               f"device memory {d.device_local_bytes / 2**30:.1f} GiB; int8 {d.shader_int8}, "
                               f"fp16 {d.shader_float16}, coopmat {'VK_KHR_cooperative_matrix' in d.extensions}"))
        if chosen.is_software:
            ok = not require_hardware
            problems += 0 if ok else 1
            lines.append(_line(ok if ok else False, "hardware GPU",
                               f"none found: runs will use {chosen.name}, a software rasterizer (slow)",
                               "install your GPU's Vulkan driver (AMD/Intel: `sudo apt-get install mesa-vulkan-drivers`)"))
    except GemforgeError as e:
        problems += 1
        lines.append(_line(False, "vulkan", e.message, e.hint or ""))
    # Shader compiler
    v = _tool_version(["glslc", "--version"])
    if v is None:
        problems += 1
    lines.append(_line(v is not None, "glslc", v or "not found", "`sudo apt-get install glslc` (or `make setup`)"))
    sv = _tool_version(["spirv-val", "--version"])
    lines.append(_line(sv is not None, "spirv-val", sv or "not found (optional: validates SPIR-V in tests)",
                       "`sudo apt-get install spirv-tools`"))
    # NPU toolchain
    try:
        from .npu import npu_status
        for ok, what, detail, fix in npu_status():
            lines.append(_line(ok, what, detail, fix))
    except ModuleNotFoundError:
        lines.append(_line(None, "npu", "NPU backend not available in this build"))
    # Build state
    bd = build_dir()
    try:
        from gemforge.gen import manifest as mf
        m = mf.load(bd)
        missing = [a.name for a in m.artifacts.values() if not (bd / a.file).is_file()]
        ok = not missing
        problems += 0 if ok else 1
        lines.append(_line(ok, "kernel build", f"{len(m.artifacts)} artifacts in {bd} (compiler {m.compiler})"
                           + (f"; {len(missing)} files missing" if missing else ""), "run `make kernels`"))
    except GemforgeError as e:
        problems += 1
        lines.append(_line(False, "kernel build", e.message, e.hint or "run `make kernels`"))
    print("\n".join(lines))
    return 0 if problems == 0 else 1
