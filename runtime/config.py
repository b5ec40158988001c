"""Model configurations: ``configs/models/gemma3-*.yaml`` as frozen dataclasses."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import yaml

from .errors import SpecError
from .paths import configs_dir


@dataclass(frozen=True)
class ModelConfig:
    name: str
    hidden: int
    ffn: int
    layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    window: int
    query_pre_attn_scalar: float
    rope_global_base: float
    rope_local_base: float
    rope_global_scale: float      # linear scaling factor of global layers (positions divided by it)
    vocab: int
    context: int
    eps: float = 1e-6
    global_every: int = 6
    bos_id: int = 2
    eos_id: int = 1
    end_of_turn_id: int = 106

    def is_global(self, layer: int) -> bool:
        return (layer + 1) % self.global_every == 0

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def shape_values(self) -> dict[str, int]:
        """The fields op specs may instantiate variants from (``from_model``)."""
        return {"hidden": self.hidden, "ffn": self.ffn, "head_dim": self.head_dim, "n_heads": self.n_heads,
                "n_kv_heads": self.n_kv_heads, "vocab": self.vocab, "window": self.window}


_TYPES = {f.name: f.type for f in fields(ModelConfig)}


def load_model_config(path: Path) -> ModelConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SpecError(f"{path}: cannot read model config: {e}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a model config must be a mapping")
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise SpecError(f"{path}: field '{unknown[0]}': unknown", f"allowed: {', '.join(_TYPES)}")
    kw = {}
    for f in fields(ModelConfig):
        if f.name not in data:
            if f.default is not MISSING:
                continue
            raise SpecError(f"{path}: field '{f.name}': missing")
        v = data[f.name]
        want = {"int": int, "float": (int, float), "str": str}[f.type]
        if not isinstance(v, want) or isinstance(v, bool):
            raise SpecError(f"{path}: field '{f.name}': expected {f.type}, got {v!r}")
        kw[f.name] = float(v) if f.type == "float" else v
    return ModelConfig(**kw)


def model_configs(directory: Path | None = None) -> dict[str, ModelConfig]:
    d = Path(directory) if directory else configs_dir() / "models"
    out = {}
    for p in sorted(d.glob("*.yaml")):
        c = load_model_config(p)
        out[c.name] = c
    return out


def model_config(name: str) -> ModelConfig:
    """By short name ('270m') or full name ('gemma3-270m')."""
    cfgs = model_configs()
    for key in (name, f"gemma3-{name}"):
        if key in cfgs:
            return cfgs[key]
    raise SpecError(f"unknown model '{name}'", f"known: {', '.join(cfgs)}")
