"""The manifest format: ``build/manifest.json``, the one thing the runtime reads from the build.

It lists every artifact with its op, variant values, file, binding and push-constant
layout, workgroup size and a content hash over everything that produced it
(template sources, spec, variant values, tuning entry, compiler version).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gemforge.runtime.errors import GemforgeError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class PushField:
    name: str
    type: str
    offset: int


@dataclass(frozen=True)
class Artifact:
    name: str
    op: str
    target: str                 # "vulkan" (SPIR-V) or "npu" (xclbin + instructions)
    file: str                   # relative to the build dir
    source: str                 # rendered source, relative to the build dir
    values: dict[str, Any]      # axes and params
    axes: dict[str, Any]
    bindings: list[dict]        # [{binding, name, access}]
    push_constants: list[PushField]
    push_size: int
    workgroup_size: list[int]
    hash: str
    tuning_key: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["push_constants"] = [asdict(p) for p in self.push_constants]
        return d

    @staticmethod
    def from_json(d: dict) -> "Artifact":
        d = dict(d)
        d["push_constants"] = [PushField(**p) for p in d["push_constants"]]
        return Artifact(**d)


@dataclass
class Manifest:
    compiler: str = ""
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "compiler": self.compiler, "models": self.models,
                "artifacts": {k: a.to_json() for k, a in sorted(self.artifacts.items())}}

    def find(self, op: str, target: str = "vulkan", tuning_key: str | None = None, **axes) -> Artifact:
        """The artifact of ``op`` whose axes equal ``axes``; a device's tuned artifact is preferred."""
        hits = [a for a in self.artifacts.values()
                if a.op == op and a.target == target and all(a.axes.get(k) == v for k, v in axes.items())]
        tuned = [a for a in hits if tuning_key and a.tuning_key == tuning_key]
        default = [a for a in hits if a.tuning_key == "default"]
        pick = tuned or default
        if len(pick) == 1:
            return pick[0]
        if not pick:
            have = sorted({json.dumps(a.axes, sort_keys=True) for a in self.artifacts.values() if a.op == op})
            raise GemforgeError(f"no {target} kernel for op '{op}' with {axes} in the build",
                                f"built variants: {', '.join(have) or 'none'}; run `make kernels`")
        raise GemforgeError(f"op '{op}' with {axes} matches several kernels: {[a.name for a in pick]}")


def load(build_dir: Path) -> Manifest:
    path = Path(build_dir) / MANIFEST_NAME
    if not path.is_file():
        raise GemforgeError(f"no kernel build at {path}", "run `make kernels` (or `gemforge kernels`) first")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GemforgeError(f"{path} is corrupt ({e.msg} at line {e.lineno})", "delete it and run `make kernels`") from None
    if d.get("format") != FORMAT_VERSION:
        raise GemforgeError(f"{path} has manifest format {d.get('format')}, this gemforge reads {FORMAT_VERSION}",
                            "run `make kernels` to rebuild")
    return Manifest(compiler=d["compiler"], models=d.get("models", []),
                    artifacts={k: Artifact.from_json(a) for k, a in d["artifacts"].items()})


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(manifest: Manifest, build_dir: Path) -> None:
    atomic_write(Path(build_dir) / MANIFEST_NAME, (json.dumps(manifest.to_json(), indent=1) + "\n").encode())
