"""`gemforge kernels`: render every variant the configured models need, compile, write the manifest.

Incremental: an artifact whose content hash (template sources, spec, variant values,
tuning entry, compiler version) is unchanged and whose file is intact is not rebuilt.
Atomic: each artifact is compiled to a temporary file and renamed into place; a
failure leaves no partial artifact and a manifest that lists only complete ones.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from gemforge.runtime import paths
from gemforge.runtime.config import model_configs
from gemforge.runtime.errors import SpecError, ToolError

from . import manifest as mf
from .render import environment, render, template_sources
from .spec import OpSpec, Variant, expand, load_specs
from .tools import glslc_version, require, run_tool

HASH_VERSION = 1


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
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise SpecError(f"{p}: malformed YAML: {e}") from None
        entries = data.get("entries", {}) if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            raise SpecError(f"{p}: field 'entries': must be a mapping of op to {{artifact: {{param: value}}}}")
        for op in entries:
            if op not in specs:
                raise SpecError(f"{p}: field 'entries.{op}': unknown op", f"known: {', '.join(specs)}")
        out[p.stem] = entries
    return out


def plan(specs: dict[str, OpSpec], models, template_dir: Path, compiler: str,
         tuning: dict[str, dict] | None = None, ops: set[str] | None = None) -> list[Planned]:
    """Every Vulkan variant to build, rendered and hashed (pure: no files written)."""
    env = environment(template_dir)
    mv = model_values(models)
    out: list[Planned] = []
    for spec in specs.values():
        if ops and spec.op not in ops:
            continue
        tsrc = template_sources(template_dir, spec.template, env)
        spec_json = json.dumps(spec.raw, sort_keys=True, default=str)
        variants = list(expand(spec, mv))
        for key, entries in (tuning or {}).items():
            for art_name, overrides in (entries.get(spec.op) or {}).items():
                base = [v for v in expand(spec, mv) if v.name == art_name]
                for v in base:
                    variants.extend(x for x in expand(spec, mv, overrides, key) if x.axes == v.axes)
        for v in variants:
            src = render(v, template_dir, env)
            h = hashlib.sha256(json.dumps([HASH_VERSION, tsrc, spec_json, sorted(v.values.items()), v.tuning_key,
                                           compiler], default=str).encode()).hexdigest()
            out.append(Planned(v, src, h))
    names = [p.name for p in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SpecError(f"two variants share the artifact name(s) {sorted(dup)}", "make the spec's 'name' mention every axis")
    return out


_LOCAL = re.compile(r"local_size_([xyz])\s*=\s*(\d+)")


def _workgroup(src: str) -> list[int]:
    wg = {"x": 1, "y": 1, "z": 1}
    for axis, n in _LOCAL.findall(src):
        wg[axis] = int(n)
    return [wg["x"], wg["y"], wg["z"]]


def _artifact(p: Planned, file: str, source: str) -> mf.Artifact:
    spec = p.variant.spec
    pcs = [mf.PushField(c.name, c.type, 4 * i) for i, c in enumerate(spec.push_constants)]
    return mf.Artifact(
        name=p.name, op=spec.op, target="vulkan", file=file, source=source, values=dict(p.variant.values),
        axes=p.variant.axes,
        bindings=[{"binding": i, "name": b.name, "access": b.access} for i, b in enumerate(p.variant.bindings)],
        push_constants=pcs, push_size=4 * len(pcs), workgroup_size=_workgroup(p.source), hash=p.hash,
        tuning_key=p.variant.tuning_key)


def compile_glsl(src_path: Path, out_path: Path) -> None:
    """glslc a rendered compute shader into ``out_path`` atomically."""
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    cmd = [require("glslc"), "-fshader-stage=compute", "--target-env=vulkan1.2", "-O", "-o", str(tmp), str(src_path)]
    try:
        run_tool(cmd, hint=f"the rendered source is {src_path}; fix its template")
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()


def build(build_dir: Path | None = None, *, jobs: int | None = None, ops: set[str] | None = None,
          log: Callable[[str], None] | None = None, progress: Callable[[int, int], None] | None = None) -> mf.Manifest:
    build_dir = Path(build_dir or paths.build_dir())
    log = log or (lambda s: print(s, file=sys.stderr))
    t0 = time.perf_counter()
    tdir = paths.templates_dir() / "glsl"
    specs = load_specs(paths.configs_dir() / "ops", tdir)
    models = model_configs()
    compiler = glslc_version()
    tuning = load_tuning(paths.configs_dir() / "tuning", specs)
    planned = plan(specs, models, tdir, compiler, tuning, ops)

    try:
        old = mf.load(build_dir)
    except Exception:
        old = mf.Manifest()
    (build_dir / "spirv").mkdir(parents=True, exist_ok=True)
    (build_dir / "src").mkdir(parents=True, exist_ok=True)

    manifest = mf.Manifest(compiler=compiler, models=sorted(models))
    todo: list[Planned] = []
    for p in planned:
        file, source = f"spirv/{p.name}.spv", f"src/{p.name}.comp"
        prev = old.artifacts.get(p.name)
        if prev and prev.hash == p.hash and (build_dir / file).is_file() and (build_dir / source).is_file():
            manifest.artifacts[p.name] = prev
        else:
            todo.append(p)

    failures: list[ToolError] = []
    done = 0

    def one(p: Planned):
        src_path = build_dir / f"src/{p.name}.comp"
        mf.atomic_write(src_path, p.source.encode())
        compile_glsl(src_path, build_dir / f"spirv/{p.name}.spv")
        return _artifact(p, f"spirv/{p.name}.spv", f"src/{p.name}.comp")

    if todo:
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
            futures = [(p, pool.submit(one, p)) for p in todo]
            for p, fut in futures:
                try:
                    manifest.artifacts[p.name] = fut.result()
                except ToolError as e:
                    failures.append(e)
                done += 1
                if progress:
                    progress(done, len(todo))
    if ops:  # a partial build keeps the other ops' artifacts
        for name, a in old.artifacts.items():
            if a.op not in ops and name not in manifest.artifacts:
                manifest.artifacts[name] = a
    else:
        keep = {f for a in manifest.artifacts.values() for f in (a.file, a.source)}
        for sub in ("spirv", "src"):
            for f in (build_dir / sub).iterdir():
                if f"{sub}/{f.name}" not in keep:
                    f.unlink()
    mf.save(manifest, build_dir)
    if failures:
        more = f"\n(and {len(failures) - 1} more failures)" if len(failures) > 1 else ""
        raise ToolError(failures[0].message + more, cmd=failures[0].cmd, stderr=failures[0].stderr,
                        hint=failures[0].hint)
    log(f"kernels: {len(planned)} variants, {len(todo)} compiled, {len(planned) - len(todo)} up to date "
        f"({time.perf_counter() - t0:.1f} s) -> {build_dir / mf.MANIFEST_NAME}")
    return manifest
