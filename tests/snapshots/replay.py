"""Render every variant the installed specs, templates, models and tuning files produce (no compiler needed)."""
from __future__ import annotations

from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "glsl"
UPDATE_COMMAND = "python -m tests.snapshots.update"


def render_all() -> dict[str, str]:
    """{artifact name: rendered GLSL} for every planned Vulkan variant."""
    from gemforge.gen.build import load_tuning, plan
    from gemforge.gen.spec import load_specs
    from gemforge.runtime import paths
    from gemforge.runtime.config import model_configs

    tdir = paths.templates_dir() / "glsl"
    specs = load_specs(paths.configs_dir() / "ops", tdir)
    planned = plan(specs, model_configs(), tdir, compiler={"glslc": "", "glslang": ""}, tuning=load_tuning(paths.configs_dir() / "tuning", specs))
    return {p.name: p.source for p in planned}


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.comp"


def goldens() -> dict[str, str]:
    return {p.name[: -len(".comp")]: p.read_text() for p in sorted(GOLDEN_DIR.glob("*.comp"))}
