"""`gemforge kernels --target npu`: render, check and (where the toolchain exists) compile every NPU design.

For every op spec with an ``npu:`` section and every configured model, the designs it needs are rendered
(MLIR + AIE C++), parsed back and resource-checked (``check.py``; one error lists every violation of every
design), and written to ``build/npu/<design>/`` with a ``compile.sh`` holding the pinned release's
commands.  Where aiecc.py and Peano are found, each model's designs are compiled into one xclbin
(``build/npu/<model>.xclbin``, one kernel per design, chained with ``--xclbin-input`` like the release's
test/npu-xrt/add_one_two) plus one instruction stream per design.  Where they are not, it says so in one
line and stops there (exit 0: everything that can be checked without them was).

The manifest (build/manifest.json) gets one artifact per design with target "npu"; artifacts of other
targets are kept (merged, never overwritten).
"""
from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from gemforge.runtime import paths
from gemforge.runtime.config import model_configs
from gemforge.runtime.errors import SpecError

from .. import manifest as mf
from ..build import _locked, _previous
from ..render import template_sources
from ..spec import load_specs
from ..tools import run_tool
from . import pin, toolchain
from .check import ResourceError, Usage, usage_and_violations
from .design import Tiling
from .mlir import parse
from .render import KERNEL_TEMPLATES, MLIR_TEMPLATES, Rendered, aie_environment, render_design
from .spec import Use, expand, parse_npu

HASH_VERSION = 1
NPU_DIR = "npu"
ARG_NAMES = {"gemm": (("x", "read"), ("w", "read"), ("y", "write")),
             "gemv": (("w", "read"), ("x", "read"), ("y", "write"))}


@dataclass
class Planned:
    rendered: Rendered
    uses: list[Use]
    usage: Usage
    hash: str
    op: str

    @property
    def name(self) -> str:
        return self.rendered.name

    @property
    def tiling(self) -> Tiling:
        return self.rendered.tiling


class NpuBuildError(SpecError):
    pass


def plan(configs_dir: Path | None = None, templates_dir: Path | None = None, ops: set[str] | None = None,
         models: dict | None = None, tool_id: str = "none") -> list[Planned]:
    """Every NPU design the configured models need: rendered, parsed and checked (pure: writes nothing).

    Raises one ``NpuBuildError`` naming every design that does not fit and each of its violations."""
    configs_dir = Path(configs_dir or paths.configs_dir())
    templates = Path(templates_dir or paths.templates_dir())
    specs = load_specs(configs_dir / "ops", templates / "glsl")
    if ops and ops - set(specs):
        raise SpecError(f"no op named {', '.join(sorted(ops - set(specs)))} in {configs_dir / 'ops'}",
                        f"known ops: {', '.join(specs)}")
    models = models if models is not None else model_configs(configs_dir / "models")
    aie_dir = templates / "aie"
    env = aie_environment(aie_dir)
    tsrc = {k: template_sources(aie_dir, MLIR_TEMPLATES[k], env) + template_sources(aie_dir, KERNEL_TEMPLATES[k], env)
            for k in MLIR_TEMPLATES}
    designs: dict[str, Planned] = {}
    failures: list[ResourceError] = []
    for spec in specs.values():
        if ops and spec.op not in ops:
            continue
        ns = parse_npu(spec)
        if ns is None:
            continue
        for name, (t, uses) in expand(ns, models).items():
            if name in designs:        # two ops with the same shape share a design
                designs[name].uses.extend(uses)
                continue
            r = render_design(t, aie_dir, env)
            usage, violations = usage_and_violations(parse(r.mlir))
            if violations:
                failures.append(ResourceError(name, violations))
                continue
            key = {"version": HASH_VERSION, "templates": tsrc[t.kind], "npu": asdict(ns) | {"path": ""},
                   "tiling": asdict(t), "pin": [pin.MLIR_AIE_RELEASE, pin.MLIR_AIE_COMMIT], "tools": tool_id,
                   "mlir": r.mlir, "kernel": r.kernel}
            h = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
            designs[name] = Planned(r, list(uses), usage, h, spec.op)
    if failures:
        text = "\n".join(e.message for e in failures)
        raise NpuBuildError(f"{len(failures)} NPU design(s) do not fit Phoenix (npu1):\n{text}",
                            "lower the tiling or depth in the op's `npu:` section (configs/ops/*.yaml)")
    return sorted(designs.values(), key=lambda p: p.name)


# -- commands (one source for compile.sh and for what the driver runs) ---------------------------------

def kernel_command(p: Planned, tc_include: str, clangxx: str) -> list[str]:
    return [clangxx, *pin.PEANO_FLAGS, "-I", tc_include, "-c", f"{p.name}.cc", "-o", p.rendered.object_file]


def aiecc_command(p: Planned, aiecc: str, peano: str, xclbin: str, kernel: str, kernel_id: int,
                  xclbin_input: str | None) -> list[str]:
    cmd = [aiecc, *pin.AIECC_FLAGS, "--peano", peano, f"--xclbin-name={xclbin}",
           f"--npu-insts-name={p.name}.insts.bin", f"--xclbin-kernel-name={kernel}",
           f"--xclbin-kernel-id={kernel_id:#x}", f"--xclbin-instance-name={kernel}INST"]
    if xclbin_input:
        cmd.append(f"--xclbin-input={xclbin_input}")
    return cmd + [f"{p.name}.mlir"]


def kernel_name(p: Planned) -> str:
    return p.name.upper()


def _script(p: Planned) -> str:
    lines = ["#!/bin/sh",
             f"# Compile {p.name} alone for Phoenix (npu1): mlir-aie {pin.MLIR_AIE_RELEASE} "
             f"({pin.MLIR_AIE_COMMIT[:8]}), Peano.",
             "# Needs MLIR_AIE_INSTALL_DIR and PEANO_INSTALL_DIR (source mlir-aie's utils/env_setup.sh).",
             "# Produces {0}.xclbin (kernel {1}) and {0}.insts.bin.  `gemforge kernels --target npu` chains every"
             .format(p.name, pin.XRT_KERNEL_NAME),
             "# design of a model into one xclbin instead.",
             "set -e", 'cd "$(dirname "$0")"',
             shlex.join(kernel_command(p, "$MLIR_AIE_INSTALL_DIR/include", "$PEANO_INSTALL_DIR/bin/clang++"))
             .replace("'", '"'),
             shlex.join(aiecc_command(p, "aiecc.py", "$PEANO_INSTALL_DIR", f"{p.name}.xclbin", pin.XRT_KERNEL_NAME,
                                      pin.XRT_FIRST_KERNEL_ID, None)).replace("'", '"'), ""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        mf.atomic_write(path, text.encode())


def _xclbins(planned: list[Planned]) -> dict[str, list[Planned]]:
    """Each model's designs (one xclbin per model), in a fixed order."""
    out: dict[str, list[Planned]] = {}
    for p in planned:
        for m in sorted({u.model for u in p.uses}):
            out.setdefault(m, []).append(p)
    return out


def _artifact(p: Planned, compiled: dict | None) -> mf.Artifact:
    t = p.tiling
    d = f"{NPU_DIR}/{p.name}"
    names = ARG_NAMES[t.kind]
    extra = {
        "kind": t.kind, "tiling": asdict(t) | {"requested": list(t.requested)}, "kernel_source": f"{d}/{p.name}.cc",
        "compile_script": f"{d}/compile.sh", "compiled": bool(compiled),
        "insts": f"{d}/{p.name}.insts.bin" if compiled else None,
        "xclbins": (compiled or {}).get("xclbins", {}), "group_ids": [pin.XRT_FIRST_ARG_GROUP + i for i in range(3)],
        "usage": {"cores": p.usage.cores, "core_data_bytes": max(p.usage.data.values()),
                  "memtile_bytes": max(p.usage.memtile.values(), default=0),
                  "program_bytes_estimate": max(p.usage.program.values())},
        "uses": [asdict(u) for u in p.uses], "toolchain": pin.describe(),
    }
    return mf.Artifact(
        name=p.name, op=p.op, target="npu",
        file=(compiled or {}).get("file") or f"{d}/{p.name}.mlir", source=f"{d}/{p.name}.mlir",
        values=asdict(t) | {"requested": list(t.requested)}, axes={"M": t.M, "K": t.K, "N": t.N, "out": t.out},
        bindings=[{"binding": i, "name": n, "access": a} for i, (n, a) in enumerate(names)],
        push_constants=[], push_size=0, workgroup_size=[t.cols, t.rows, 1], hash=p.hash, extra=extra)


def build_npu(build_dir: Path | None = None, *, configs_dir: Path | None = None, templates_dir: Path | None = None,
              ops: set[str] | None = None, log: Callable[[str], None] | None = None) -> mf.Manifest:
    build_dir = Path(build_dir or paths.build_dir())
    log = log or (lambda s: print(s, file=sys.stderr))
    t0 = time.perf_counter()
    tc = toolchain.find()
    planned = plan(configs_dir, templates_dir, ops, tool_id=toolchain.version(tc))
    npu_dir = build_dir / NPU_DIR
    with _locked(build_dir):
        old = _previous(build_dir)
        for p in planned:
            d = npu_dir / p.name
            _write(d / f"{p.name}.mlir", p.rendered.mlir)
            _write(d / f"{p.name}.cc", p.rendered.kernel)
            _write(d / "compile.sh", _script(p))
        compiled = _compile(planned, npu_dir, old, tc, log) if tc.complete else {}
        manifest = mf.Manifest(compiler=old.compiler, models=old.models, artifacts={
            n: a for n, a in old.artifacts.items()
            if a.target != "npu" or (ops and a.op not in ops)})
        for p in planned:
            manifest.artifacts[p.name] = _artifact(p, compiled.get(p.name))
        if not ops and npu_dir.is_dir():       # designs no longer generated
            keep = {p.name for p in planned} | {f"{m}.xclbin" for m in _xclbins(planned)}
            for f in npu_dir.iterdir():
                if f.name not in keep and f.is_dir():
                    for g in f.iterdir():
                        g.unlink()
                    f.rmdir()
        mf.save(manifest, build_dir)
    n = len(planned)
    took = f"{time.perf_counter() - t0:.1f} s"
    if tc.complete:
        log(f"kernels (npu): {n} designs rendered, checked and compiled into {len(_xclbins(planned))} xclbin(s) "
            f"({took}) -> {npu_dir}")
    else:
        log(f"kernels (npu): {n} designs rendered and resource-checked ({took}) -> {npu_dir}; NOT compiled: "
            f"{tc.describe_missing()}")
    return manifest


def _compile(planned: list[Planned], npu_dir: Path, old: mf.Manifest, tc, log) -> dict[str, dict]:
    """Compile every model's xclbin (kernels chained with --xclbin-input); incremental per model."""
    out: dict[str, dict] = {}
    for model, designs in _xclbins(planned).items():
        xclbin = npu_dir / f"{model}.xclbin"
        fresh = xclbin.is_file() and all(
            (a := old.artifacts.get(p.name)) is not None and a.hash == p.hash and a.extra.get("compiled")
            and model in a.extra.get("xclbins", {}) for p in designs)
        prev = None
        for i, p in enumerate(designs):
            d = npu_dir / p.name
            kname, kid = kernel_name(p), pin.XRT_FIRST_KERNEL_ID + i
            if not fresh:
                if not (d / p.rendered.object_file).is_file() or not (d / f"{p.name}.insts.bin").is_file() or \
                        (old.artifacts.get(p.name) and old.artifacts[p.name].hash != p.hash):
                    run_tool(kernel_command(p, str(tc.mlir_aie / "include"), tc.clangxx), cwd=d,
                             hint=f"the kernel source is {d / (p.name + '.cc')}")
                tmp = npu_dir / f".{model}.{i}.xclbin"
                run_tool(aiecc_command(p, tc.aiecc, str(tc.peano), str(tmp), kname, kid,
                                       str(prev) if prev else None), cwd=d,
                         hint=f"the design is {d / (p.name + '.mlir')}")
                if prev and prev != xclbin:
                    prev.unlink(missing_ok=True)
                prev = tmp
            entry = out.setdefault(p.name, {"file": f"{NPU_DIR}/{model}.xclbin", "xclbins": {}})
            entry["xclbins"][model] = {"file": f"{NPU_DIR}/{model}.xclbin", "kernel": kname, "id": hex(kid)}
        if not fresh and prev:
            prev.replace(xclbin)
        log(f"kernels (npu): {model}: {len(designs)} kernels in {xclbin}")
    return out
