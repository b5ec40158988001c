"""`gemforge kernels`: render every variant the configured models need, compile, write the manifest.

Incremental: an artifact whose content hash (template sources, spec, variant values,
tuning entry, compiler version and flags, rendered source) is unchanged and whose file
is intact is not rebuilt.
Atomic: each artifact is compiled to a temporary file and renamed into place; a
failure leaves no partial artifact and a manifest that lists only complete ones (the
failed variant's rendered source stays in ``src/`` for inspection).
One build at a time per build directory (an advisory lock on ``<build>/.lock``).
"""
from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gemforge.runtime import paths
from gemforge.runtime.config import model_configs
from gemforge.runtime.errors import GemforgeError, SpecError, ToolError
from gemforge.runtime.spirv import workgroup_bytes

from . import manifest as mf
from .render import environment, render, template_sources
from .spec import OpSpec, Variant, expand, load_specs, load_yaml
from .tools import INSTALL_HINTS, glslang_version, glslc_version, require, run_tool

HASH_VERSION = 2
GLSLC_FLAGS = ("-fshader-stage=compute", "--target-env=vulkan1.2", "-O")
GLSLANG_FLAGS = ("-V", "--target-env", "vulkan1.2", "-S", "comp")
FLAGS = {"glslc": GLSLC_FLAGS, "glslang": GLSLANG_FLAGS}


@dataclass
class Planned:
    variant: Variant
    source: str
    hash: str

    @property
    def name(self) -> str:
        return self.variant.name


def model_values(models) -> dict[str, tuple]:
    out: dict[str, set] = {}
    for m in models.values():
        for k, v in m.shape_values().items():
            out.setdefault(k, set()).add(v)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def load_tuning(tuning_dir: Path, specs: dict[str, OpSpec]) -> dict[str, dict]:
    """``configs/tuning/<device-key>.yaml``: {op: {artifact-name: {param: value}}} per device key."""
    out = {}
    if not tuning_dir.is_dir():
        return out
    for p in sorted(tuning_dir.glob("*.yaml")):
        data = load_yaml(p) or {}
        entries = data.get("entries", {}) if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise SpecError(f"{p}: field 'entries': must be a mapping of op to {{artifact: {{param: value}}}}")
        for op, arts in entries.items():
            if op not in specs:
                raise SpecError(f"{p}: field 'entries.{op}': unknown op", f"known: {', '.join(specs)}")
            if not isinstance(arts, dict) or not all(isinstance(v, dict) for v in arts.values()):
                raise SpecError(f"{p}: field 'entries.{op}': must be a mapping of artifact name to "
                                f"{{param: value}}, got {arts!r}")
        out[p.stem] = entries
    return out


def candidate_key(overrides: dict) -> str:
    """The tuning key of one point of a tuning space: 'tune-rows_per_wg4-wg_size128'."""
    return "tune-" + "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))


def candidates(spec: OpSpec, mv, target: str = "vulkan", where: list[dict] | None = None) -> list[Variant]:
    """Every point of the op's tuning space for ``target``, as variants keyed by candidate_key
    (points that violate the spec's constraints are not variants); ``where`` keeps only the
    variants whose axes or params have the values of one of its filters (e.g. [{'bucket': 256}],
    [{'format': 'q4_0', 'wg_size': 128}])."""
    space = spec.tuning.get(target) or {}
    out = []
    for combo in itertools.product(*space.values()):
        overrides = dict(zip(space, combo))
        out.extend(v for v in expand(spec, mv, overrides, candidate_key(overrides))
                   if not where or any(all(str(v.values.get(k)) == str(val) for k, val in f.items()) for f in where))
    return out


def parse_tune_ops(items) -> dict[str, list[dict]]:
    """['matvec', 'matmul:bucket=256,format=q8_0'] -> {'matvec': [], 'matmul': [{'bucket': '256', 'format': 'q8_0'}]}
    (an op named without filters takes every variant)."""
    out: dict[str, list[dict]] = {}
    for item in items or ():
        op, _, rest = item.partition(":")
        filters = out.setdefault(op, [])
        if rest:
            filters.append(dict(kv.split("=", 1) for kv in rest.split(",") if kv))
    return out


def plan(specs: dict[str, OpSpec], models, template_dir: Path, compiler: str | dict[str, str | None],
         tuning: dict[str, dict] | None = None, ops: set[str] | None = None,
         tune_ops: dict[str, dict] | None = None) -> list[Planned]:
    """Every Vulkan variant to build, rendered and hashed (pure: no files written).
    ``compiler``: the identity of each compiler ({'glslc': ..., 'glslang': ...}; a plain string is
    glslc's); ops whose compiler is None (not installed) are left out.
    ``tune_ops``: also every point of these ops' tuning spaces (for `gemforge tune`)."""
    compilers = compiler if isinstance(compiler, dict) else {"glslc": compiler}
    env = environment(template_dir)
    mv = model_values(models)
    out: list[Planned] = []
    for spec in specs.values():
        if ops and spec.op not in ops:
            continue
        ident = compilers.get(spec.compiler)
        if ident is None:
            continue
        tsrc = template_sources(template_dir, spec.template, env)
        spec_json = json.dumps(spec.raw, sort_keys=True, default=str)
        variants = list(expand(spec, mv))
        by_name = {v.name: v for v in variants}
        for key, entries in (tuning or {}).items():
            for art_name, overrides in (entries.get(spec.op) or {}).items():
                base = by_name.get(art_name)
                if base is None:
                    raise SpecError(f"tuning file {key}.yaml, field 'entries.{spec.op}.{art_name}': op '{spec.op}' "
                                    f"has no artifact '{art_name}'",
                                    f"its artifacts: {', '.join(by_name)}; remove or rename the entry")
                tuned = [x for x in expand(spec, mv, overrides, key) if x.axes == base.axes]
                if not tuned:
                    raise SpecError(f"tuning file {key}.yaml, field 'entries.{spec.op}.{art_name}': {overrides} "
                                    f"violates the constraints of op '{spec.op}': {list(spec.constraints)}",
                                    "choose values the spec allows")
                variants.extend(tuned)
        if tune_ops and spec.op in tune_ops:
            variants.extend(candidates(spec, mv, where=tune_ops[spec.op]))
        for v in variants:
            src = render(v, template_dir, env)
            out.append(Planned(v, src, content_hash(tsrc, spec_json, v, ident, src)))
    names = [p.name for p in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SpecError(f"two variants share the artifact name(s) {sorted(dup)}", "make the spec's 'name' mention every axis")
    return out


def content_hash(template_sources: list[tuple[str, str]], spec_json: str, variant: Variant, compiler: str,
                 source: str) -> str:
    """sha256 over an explicit record of everything that determines an artifact (tinygrad-style)."""
    key = {
        "version": HASH_VERSION,
        "templates": template_sources,          # the template and every file it includes
        "spec": spec_json,
        "values": sorted(variant.values.items()),  # axes and params, tuning overrides included
        "tuning_key": variant.tuning_key,
        "compiler": compiler,
        "flags": FLAGS[variant.spec.compiler],
        "source": source,                       # covers changes of the generator itself
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


_LOCAL = re.compile(r"local_size_([xyz])\s*=\s*(\d+)")


def _workgroup(src: str) -> list[int]:
    wg = {"x": 1, "y": 1, "z": 1}
    for axis, n in _LOCAL.findall(src):
        wg[axis] = int(n)
    return [wg["x"], wg["y"], wg["z"]]


def _artifact(p: Planned, file: str, source: str, shared_bytes: int) -> mf.Artifact:
    spec = p.variant.spec
    pcs = [mf.PushField(c.name, c.type, 4 * i) for i, c in enumerate(spec.push_constants)]
    extra = {"requires": list(spec.requires), "compiler": spec.compiler} if spec.requires else {}
    return mf.Artifact(
        name=p.name, op=spec.op, target="vulkan", file=file, source=source, values=dict(p.variant.values),
        axes=p.variant.axes,
        bindings=[{"binding": i, "name": b.name, "access": b.access} for i, b in enumerate(p.variant.bindings)],
        push_constants=pcs, push_size=4 * len(pcs), workgroup_size=_workgroup(p.source), hash=p.hash,
        tuning_key=p.variant.tuning_key,
        extra={**extra, "shared_bytes": shared_bytes})


def compile_glsl(src_path: Path, out_path: Path, compiler: str = "glslc") -> None:
    """Compile a rendered compute shader into ``out_path`` atomically (glslc, or glslangValidator)."""
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    if compiler == "glslang":
        cmd = [require("glslangValidator"), *GLSLANG_FLAGS, "-o", str(tmp), str(src_path)]
    else:
        cmd = [require("glslc"), *GLSLC_FLAGS, "-o", str(tmp), str(src_path)]
    try:
        run_tool(cmd, hint=f"the rendered source is {src_path}; fix its template")
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def _locked(build_dir: Path):
    """Serialize builds into one directory (two at once would prune each other's files)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _previous(build_dir: Path) -> mf.Manifest:
    """The last build's manifest, or an empty one when there is none or it is unreadable (full rebuild)."""
    try:
        return mf.load(build_dir)
    except (GemforgeError, KeyError, TypeError, ValueError):
        return mf.Manifest()


def build(build_dir: Path | None = None, *, configs_dir: Path | None = None, templates_dir: Path | None = None,
          jobs: int | None = None, ops: set[str] | None = None, tune_ops: dict[str, dict] | None = None,
          log: Callable[[str], None] | None = None,
          progress: Callable[[int, int], None] | None = None) -> mf.Manifest:
    """Build every Vulkan kernel into ``build_dir`` (default ``paths.build_dir()``).

    ``configs_dir`` (with ``ops/``, ``models/``, optional ``tuning/``) and ``templates_dir`` (with
    ``glsl/``) default to the installed package data; tests point them at a temporary copy.
    ``progress(done, total)`` is called after each compiled variant.
    """
    build_dir = Path(build_dir or paths.build_dir())
    configs_dir = Path(configs_dir or paths.configs_dir())
    log = log or (lambda s: print(s, file=sys.stderr))
    t0 = time.perf_counter()
    tdir = Path(templates_dir or paths.templates_dir()) / "glsl"
    specs = load_specs(configs_dir / "ops", tdir)
    if ops and ops - set(specs):
        raise SpecError(f"no op named {', '.join(sorted(ops - set(specs)))} in {configs_dir / 'ops'}",
                        f"known ops: {', '.join(specs)}")
    models = model_configs(configs_dir / "models")
    compiler = glslc_version()
    compilers = {"glslc": compiler, "glslang": glslang_version()}
    tuning = load_tuning(configs_dir / "tuning", specs)
    planned = plan(specs, models, tdir, compilers, tuning, ops, tune_ops)
    skipped = sorted(s.op for s in specs.values() if compilers.get(s.compiler) is None and (not ops or s.op in ops))
    if skipped:
        log(f"kernels: op(s) {', '.join(skipped)} not built: glslangValidator (GL_KHR_cooperative_matrix) was not "
            f"found; {INSTALL_HINTS['glslangValidator']}. Devices use the portable kernels instead, and say so.")
    with _locked(build_dir):
        manifest, compiled = _compile_all(planned, build_dir, _previous(build_dir), compiler, sorted(models),
                                          jobs, ops, progress)
    log(f"kernels: {len(planned)} variants, {compiled} compiled, {len(planned) - compiled} up to date "
        f"({time.perf_counter() - t0:.1f} s) -> {build_dir / mf.MANIFEST_NAME}")
    return manifest


def _compile_all(planned: list[Planned], build_dir: Path, old: mf.Manifest, compiler: str, models: list[str],
                 jobs: int | None, ops: set[str] | None, progress) -> tuple[mf.Manifest, int]:
    (build_dir / "spirv").mkdir(parents=True, exist_ok=True)
    (build_dir / "src").mkdir(parents=True, exist_ok=True)
    manifest = mf.Manifest(compiler=compiler, models=models)
    todo: list[Planned] = []
    for p in planned:
        file, source = f"spirv/{p.name}.spv", f"src/{p.name}.comp"
        prev = old.artifacts.get(p.name)
        if prev and prev.hash == p.hash and (build_dir / file).is_file() and (build_dir / source).is_file() \
                and "shared_bytes" in prev.extra:
            manifest.artifacts[p.name] = prev
        else:
            todo.append(p)

    def one(p: Planned) -> mf.Artifact:
        src_path = build_dir / f"src/{p.name}.comp"
        mf.atomic_write(src_path, p.source.encode())
        spv = build_dir / f"spirv/{p.name}.spv"
        compile_glsl(src_path, spv, p.variant.spec.compiler)
        return _artifact(p, f"spirv/{p.name}.spv", f"src/{p.name}.comp", workgroup_bytes(spv.read_bytes(), p.name))

    failures: list[tuple[Planned, ToolError]] = []
    if todo:
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
            futures = [(p, pool.submit(one, p)) for p in todo]
            for done, (p, fut) in enumerate(futures, 1):
                try:
                    manifest.artifacts[p.name] = fut.result()
                except ToolError as e:
                    failures.append((p, e))
                if progress:
                    progress(done, len(todo))
    for name, a in old.artifacts.items():  # other targets' artifacts (npu: gen/npu/build.py) are not ours to drop
        if a.target != "vulkan" and name not in manifest.artifacts:
            manifest.artifacts[name] = a
    if ops:  # a partial build keeps the other ops' artifacts
        for name, a in old.artifacts.items():
            if a.op not in ops and name not in manifest.artifacts:
                manifest.artifacts[name] = a
    keep = {f for a in manifest.artifacts.values() for f in (a.file, a.source)}
    keep |= {f"src/{p.name}.comp" for p, _ in failures}  # the failed sources, for the error message
    for sub in ("spirv", "src"):  # stale artifacts, failed variants' old files, leftover temp files
        for f in (build_dir / sub).iterdir():
            if f"{sub}/{f.name}" not in keep:
                f.unlink()
    mf.save(manifest, build_dir)
    if failures:
        p, e = failures[0]
        more = f"\n(and {len(failures) - 1} more failing variants: {', '.join(q.name for q, _ in failures[1:])})" \
            if len(failures) > 1 else ""
        raise ToolError(f"kernel {p.name} does not compile: {e.message}{more}", cmd=e.cmd, stderr=e.stderr,
                        hint=e.hint)
    return manifest, len(todo)
