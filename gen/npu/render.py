"""Render one NPU design: its MLIR (templates/aie/<kind>_w8a8.mlir.j2) and its AIE C++ kernels
(templates/aie/<mm|mv>_w8a8.cc.j2).  Pure: text in, text out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from gemforge.runtime.errors import SpecError

from ..render import environment
from . import pin
from .design import OUT_BYTES, R, S, T, Tiling, context, kernel_expansion

MLIR_TEMPLATES = {"gemm": "gemm_w8a8.mlir.j2", "gemv": "gemv_w8a8.mlir.j2"}
KERNEL_TEMPLATES = {"gemm": "mm_w8a8.cc.j2", "gemv": "mv_w8a8.cc.j2"}


@dataclass(frozen=True)
class Rendered:
    tiling: Tiling
    mlir: str
    kernel: str

    @property
    def name(self) -> str:
        return self.tiling.name

    @property
    def object_file(self) -> str:
        return f"{self.name}.o"


def _tile(p) -> str:
    return f"%tile_{p[0]}_{p[1]}"


def _dims(dims) -> str:
    if not dims:
        return ""
    return " dimensionsToStream [" + ", ".join(f"<size = {a}, stride = {b}>" for a, b in dims) + "]"


def aie_environment(template_dir: Path) -> jinja2.Environment:
    env = environment(template_dir)
    env.filters["symbol"] = lambda s: f"@{s}"
    env.filters["tile"] = _tile
    return env


def render_design(t: Tiling, template_dir: Path, env: jinja2.Environment | None = None) -> Rendered:
    """The MLIR and kernel source of one design (``template_dir`` is templates/aie)."""
    env = env or aie_environment(template_dir)
    ctx = context(t)
    tiles = sorted({f["producer"] for f in ctx["fifos"]} | {c for f in ctx["fifos"] for c in f["consumers"]})
    em, en = kernel_expansion(t.m, t.n)
    common = dict(pin=pin, tile=_tile, dims=_dims, object_file=f"{t.name}.o", r=R, s=S, t_=T, em=em, en=en,
                  out_bytes=OUT_BYTES[t.out])
    try:
        mlir = env.get_template(MLIR_TEMPLATES[t.kind]).render(**ctx, **common, tiles=tiles)
        kernel = env.get_template(KERNEL_TEMPLATES[t.kind]).render(**ctx, **common)
    except (jinja2.TemplateError, TypeError, ValueError) as e:
        where = getattr(e, "filename", None) or str(template_dir)
        line = getattr(e, "lineno", None)
        raise SpecError(f"{where}{f':{line}' if line else ''}: NPU template error for {t.name}: {e}",
                        "fix the template under templates/aie/") from None
    return Rendered(t, mlir, kernel)
