"""A small, self-contained gemforge project in a temp dir, so gen/ can be tested without the real ops.

    project/configs/ops/{scale,copy}.yaml   two ops, 2 variants each
    project/configs/models/gemma3-270m.yaml, gemma3-1b.yaml (copies of the real ones)
    project/templates/glsl/{common.glsl.j2,scale.comp.j2,copy.comp.j2}
"""
from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from gemforge.runtime import paths

SCALE_YAML = """\
op: scale
template: scale.comp.j2
summary: y = x * s
name: "scale_{mode}"
bindings:
  - {name: x, access: read}
  - {name: r, access: read, when: "mode == 'add'"}
  - {name: y, access: write}
push_constants:
  - {name: n, type: uint}
  - {name: s, type: float}
axes:
  mode: [plain, add]
params:
  wg_size: 64
constraints:
  - "wg_size % 32 == 0"
tuning:
  vulkan: {wg_size: [32, 64, 128]}
"""

COPY_YAML = """\
op: copy
template: copy.comp.j2
name: "copy_w{width}"
bindings:
  - {name: src, access: read}
  - {name: dst, access: write}
push_constants:
  - {name: n, type: uint}
axes:
  width: [1, 4]
params:
  wg_size: 128
"""

COMMON = """\
#version 450
// test kernel {{ variant_name }}
"""

SCALE_TMPL = """\
{% include 'common.glsl.j2' %}
layout(local_size_x = {{ wg_size }}) in;
{{ bind('x', 'float') }}
{% if mode == 'add' %}
{{ bind('r', 'float') }}
{% endif %}
{{ bind('y', 'float') }}
{{ push_constants() }}
void main() {
    const uint i = gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
{% if mode == 'add' %}
    y[i] = r[i] + x[i] * pc.s;
{% else %}
    y[i] = x[i] * pc.s;
{% endif %}
}
"""

COPY_TMPL = """\
{% include 'common.glsl.j2' %}
layout(local_size_x = {{ wg_size }}) in;
{% set T = 'float' if width == 1 else 'vec4' %}
{{ bind('src', T) }}
{{ bind('dst', T) }}
{{ push_constants() }}
void main() {
    const uint i = gl_GlobalInvocationID.x;
    if (i < pc.n) dst[i] = src[i];
}
"""


@dataclass
class Project:
    root: Path

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def ops(self) -> Path:
        return self.configs / "ops"

    @property
    def glsl(self) -> Path:
        return self.templates / "glsl"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    def write(self, rel: str, text: str) -> Path:
        """Write a file under the project root (dedented)."""
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
        return p

    def build(self, **kw):
        from gemforge.gen.build import build
        return build(self.build_dir, configs_dir=self.configs, templates_dir=self.templates,
                     log=kw.pop("log", lambda s: None), **kw)

    def specs(self):
        from gemforge.gen.spec import load_specs
        return load_specs(self.ops, self.glsl)

    def cli(self, *args: str) -> list[str]:
        """`gemforge kernels` against this project."""
        return ["kernels", "--configs", str(self.configs), "--templates", str(self.templates),
                "--build-dir", str(self.build_dir), *args]


@pytest.fixture
def project(tmp_path) -> Project:
    p = Project(tmp_path / "project")
    p.write("configs/ops/scale.yaml", SCALE_YAML)
    p.write("configs/ops/copy.yaml", COPY_YAML)
    p.write("templates/glsl/common.glsl.j2", COMMON)
    p.write("templates/glsl/scale.comp.j2", SCALE_TMPL)
    p.write("templates/glsl/copy.comp.j2", COPY_TMPL)
    (p.configs / "models").mkdir(parents=True)
    for m in ("gemma3-270m", "gemma3-1b"):
        shutil.copy(paths.configs_dir() / "models" / f"{m}.yaml", p.configs / "models")
    return p
