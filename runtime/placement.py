"""Op placement: ``configs/placement/<name>.yaml`` maps each op of the model to a target (vulkan | npu).

``check_placement(name, model)`` loads and validates a placement and, for a strict one, checks every piece
it needs on this machine *before any work starts*, raising one DeviceError that lists everything missing
(not just the first).  ``Placement.describe()`` is the line the run summary prints.

```yaml
name: phoenix
summary: one line
strict: true
devices:                 # what each target needs
  npu: {device: npu1}    # XRT + pyxrt + /dev/accel/accel0 + a compiled xclbin with the model's designs
  vulkan: {hardware: true}
default: vulkan          # target of every op not listed
ops: {matmul: npu, matvec: npu}
```
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import yaml

from .errors import DeviceError, GemforgeError, SpecError
from .paths import build_dir as default_build_dir
from .paths import configs_dir as default_configs_dir

TARGETS = ("vulkan", "npu")
KEYS = {"name", "summary", "strict", "devices", "default", "ops"}


@dataclass(frozen=True)
class Placement:
    name: str
    path: Path
    summary: str
    strict: bool
    devices: Mapping[str, Mapping]
    default: str
    ops: Mapping[str, str] = field(default_factory=dict)

    def target(self, op: str) -> str:
        return self.ops.get(op, self.default)

    def ops_on(self, target: str) -> list[str]:
        return sorted(op for op, t in self.ops.items() if t == target)

    def describe(self) -> str:
        """One line for the run summary."""
        others = [t for t in TARGETS if t != self.default and self.ops_on(t)]
        if not others:
            return f"placement {self.name}: every op on {self.default}"
        parts = [f"{', '.join(self.ops_on(t))} on {t}" for t in others]
        return f"placement {self.name}: {'; '.join(parts)}; everything else on {self.default}"


def placement_names(configs_dir: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (Path(configs_dir or default_configs_dir()) / "placement").glob("*.yaml"))


def load_placement(name: str, configs_dir: Path | None = None) -> Placement:
    cdir = Path(configs_dir or default_configs_dir())
    path = cdir / "placement" / f"{name}.yaml"
    if not path.is_file():
        raise SpecError(f"no placement '{name}' ({path} does not exist)",
                        f"known placements: {', '.join(placement_names(cdir)) or 'none'}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: malformed YAML: {e}") from None

    def want(cond, fieldname, msg, hint=None):
        if not cond:
            raise SpecError(f"{path}: field '{fieldname}': {msg}", hint)

    want(isinstance(data, dict), "(top level)", "must be a mapping")
    unknown = sorted(set(data) - KEYS)
    want(not unknown, unknown[0] if unknown else "", "unknown key", f"allowed: {', '.join(sorted(KEYS))}")
    want(data.get("name") == name, "name", f"must be '{name}' (the file name), got {data.get('name')!r}")
    devices = data.get("devices") or {}
    want(isinstance(devices, dict) and all(k in TARGETS for k in devices), "devices",
         f"must map targets ({', '.join(TARGETS)}) to their requirements, got {devices!r}")
    default = data.get("default", "vulkan")
    want(default in TARGETS, "default", f"unknown target {default!r}", f"use one of {', '.join(TARGETS)}")
    ops = data.get("ops") or {}
    want(isinstance(ops, dict), "ops", "must map op names to targets")
    from gemforge.gen.spec import load_specs   # the op specs are the vocabulary of op names
    specs = load_specs(cdir / "ops")
    for op, target in ops.items():
        want(op in specs, f"ops.{op}", "not an op in configs/ops", f"known ops: {', '.join(sorted(specs))}")
        want(target in TARGETS, f"ops.{op}", f"unknown target {target!r}", f"use one of {', '.join(TARGETS)}")
        want(target != "npu" or specs[op].npu is not None, f"ops.{op}",
             f"placed on the npu, but {specs[op].path} has no `npu:` section")
        want(target in devices, f"ops.{op}", f"placed on {target}, which 'devices' does not describe")
    strict = data.get("strict", True)
    want(isinstance(strict, bool), "strict", "must be true or false")
    return Placement(name, path, str(data.get("summary", "")), strict, devices, default, dict(ops))


def missing_pieces(p: Placement, model=None, build_dir: Path | None = None,
                   configs_dir: Path | None = None) -> list[str]:
    """Everything this machine lacks for placement ``p`` (and ``model``, a ModelConfig or name), one line each."""
    out: list[str] = []
    targets = {p.default} | set(p.ops.values())
    if "npu" in targets:
        out += _missing_npu(p, model, Path(build_dir or default_build_dir()), configs_dir)
    if "vulkan" in targets and p.devices.get("vulkan", {}).get("hardware"):
        out += _missing_hardware_gpu()
    return out


def _missing_npu(p: Placement, model, build_dir: Path, configs_dir) -> list[str]:
    from gemforge.gen import manifest as mf

    from .npu import missing_runtime
    out = list(missing_runtime())
    try:
        arts = {a.name: a for a in mf.load(build_dir).artifacts.values() if a.target == "npu"}
    except GemforgeError as e:
        return out + [f"no kernel build: {e.message} (run `gemforge kernels --target npu`)"]
    if not arts:
        return out + [f"no NPU designs in {build_dir} (run `make kernels` or `gemforge kernels --target npu`)"]
    if isinstance(model, str):
        from .config import model_config
        model = model_config(model)
    model_name = model.name if model is not None else None
    needed = _needed_designs(p, model, configs_dir) if model is not None else None
    if needed is not None:
        absent = sorted(set(needed) - set(arts))
        if absent:
            out.append(f"{len(absent)} NPU design(s) {model_name} needs are not in the build "
                       f"(e.g. {absent[0]}; run `gemforge kernels --target npu`)")
        chosen = [arts[n] for n in needed if n in arts]
    else:
        chosen = [a for a in arts.values() if a.op in p.ops_on("npu")]
    uncompiled = [a.name for a in chosen if not a.extra.get("compiled")]
    if uncompiled:
        out.append(f"{len(uncompiled)} of {len(chosen)} NPU designs are rendered and checked but not compiled "
                   f"(no aiecc.py/Peano where `gemforge kernels --target npu` ran; e.g. {uncompiled[0]})")
    if model_name is not None:
        xclbin = build_dir / "npu" / f"{model_name}.xclbin"
        if not xclbin.is_file():
            out.append(f"no xclbin for {model_name} at {xclbin}")
    return out


def _needed_designs(p: Placement, cfg, configs_dir) -> list[str]:
    from gemforge.gen.npu.spec import expand, parse_npu
    from gemforge.gen.spec import load_specs

    cdir = Path(configs_dir or default_configs_dir())
    specs = load_specs(cdir / "ops")
    names: list[str] = []
    for op in p.ops_on("npu"):
        names += list(expand(parse_npu(specs[op]), {cfg.name: cfg}))
    return names


def _missing_hardware_gpu() -> list[str]:
    try:
        from .vulkan import list_devices
        devs = list_devices()
    except GemforgeError as e:
        return [f"Vulkan: {e.message}"]
    if not devs:
        return ["no Vulkan device (install the GPU's Vulkan driver: `sudo apt-get install mesa-vulkan-drivers`)"]
    if all(d.is_software for d in devs):
        return [f"no hardware Vulkan GPU (only {', '.join(d.name for d in devs)}): the iGPU needs its Vulkan "
                "driver (RADV: `sudo apt-get install mesa-vulkan-drivers`)"]
    return []


def check_placement(name: str, model=None, *, build_dir: Path | None = None,
                    configs_dir: Path | None = None) -> Placement:
    """Load placement ``name``; for a strict placement, raise DeviceError listing every missing piece."""
    p = load_placement(name, configs_dir)
    if p.strict:
        missing = missing_pieces(p, model, build_dir, configs_dir)
        if missing:
            lines = "\n".join(f"  - {m}" for m in missing)
            raise DeviceError(f"placement '{name}' cannot run on this machine; missing:\n{lines}",
                              "see `gemforge doctor`; `--placement vulkan` runs everything on the GPU")
    return p
