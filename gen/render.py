"""Rendering: one Variant -> GLSL source, with Jinja in StrictUndefined mode.

Templates do not spell out their buffer bindings or push constants: they call
``{{ bind('x', 'float') }}`` and ``{{ push_constants() }}``, which emit the
declarations from the spec, so the binding and push-constant layout recorded in
the manifest is the one the shader was compiled with.  A template that forgets
a binding, or names one the spec lacks, fails to render.
"""
from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2 import meta

from gemforge.runtime.errors import SpecError

from .spec import Variant

_QUAL = {"read": "readonly ", "write": "writeonly ", "readwrite": "", "coherent": "coherent "}
GLSL_TYPES = ("float", "uint", "int", "vec2", "vec4", "uvec2", "uvec4", "ivec4")


def environment(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env


def template_sources(template_dir: Path, name: str, env: jinja2.Environment | None = None) -> list[tuple[str, str]]:
    """The template and every file it includes/imports (for content hashing), sorted by name."""
    env = env or environment(template_dir)
    seen: dict[str, str] = {}
    todo = [(name, None)]
    while todo:
        n, parent = todo.pop()
        if n in seen:
            continue
        try:
            src = (template_dir / n).read_text()
        except OSError as e:
            by = f" (included by {parent})" if parent else ""
            raise SpecError(f"{template_dir / n}: cannot read template{by}: {e.strerror}") from None
        seen[n] = src
        try:
            ast = env.parse(src, n, str(template_dir / n))
        except jinja2.TemplateSyntaxError as e:
            raise SpecError(f"{template_dir / n}:{e.lineno}: template syntax error: {e.message}") from None
        todo.extend((t, n) for t in meta.find_referenced_templates(ast) if t)
    return sorted(seen.items())


def render(variant: Variant, template_dir: Path, env: jinja2.Environment | None = None) -> str:
    spec = variant.spec
    env = env or environment(template_dir)
    bindings = variant.bindings
    declared: list[str] = []
    aliases: set[str] = set()

    def bind(name: str, type: str, alias: str | None = None, coherent: bool = False) -> str:
        """Declare binding ``name`` as an array of ``type``; ``alias`` gives a second view of the same binding.
        ``coherent``: this variant reads what other workgroups of the dispatch wrote (a 'readwrite' binding
        whose other variants do not need the qualifier, which can cost them speed)."""
        idx = next((i for i, b in enumerate(bindings) if b.name == name), None)
        if idx is None:
            raise SpecError(f"{spec.path}: op '{spec.op}', template {spec.template}: binds '{name}', which variant "
                            f"{variant.name} does not have (its bindings: {[b.name for b in bindings]})")
        if type not in GLSL_TYPES:
            raise SpecError(f"{spec.path}: op '{spec.op}', template {spec.template}: unsupported buffer type {type!r}")
        var = alias or name
        if var in aliases:
            raise SpecError(f"{spec.path}: op '{spec.op}', template {spec.template}: '{var}' declared twice")
        aliases.add(var)
        declared.append(name)
        qual = _QUAL[bindings[idx].access]
        if coherent:
            if bindings[idx].access not in ("readwrite", "coherent"):
                raise SpecError(f"{spec.path}: op '{spec.op}', template {spec.template}: binds '{name}' coherent, "
                                f"but its access is '{bindings[idx].access}'", "make it readwrite in the spec")
            qual = _QUAL["coherent"]
        # restrict lets the compiler assume no aliasing between bindings; aliased views drop it.
        restrict = "" if alias else "restrict "
        return (f"layout(std430, set = 0, binding = {idx}) {restrict}{qual}buffer B_{var} "
                f"{{ {type} {var}[]; }};")

    def push_constants() -> str:
        if not spec.push_constants:
            return ""
        fields = " ".join(f"{p.type} {p.name};" for p in spec.push_constants)
        return f"layout(push_constant) uniform PushConstants {{ {fields} }} pc;"

    try:
        tmpl = env.get_template(spec.template)
        src = tmpl.render(**variant.values, v=variant.values, op=spec.op, bind=bind,
                          push_constants=push_constants, variant_name=variant.name)
    except jinja2.UndefinedError as e:
        raise SpecError(f"{spec.path}: op '{spec.op}', template {spec.template}: {e.message} "
                        f"(variant {variant.name})", "declare it as an axis or param in the spec") from None
    except jinja2.TemplateSyntaxError as e:
        raise SpecError(f"{template_dir / (e.name or spec.template)}:{e.lineno}: template syntax error: {e.message}") from None
    except jinja2.TemplateNotFound as e:
        raise SpecError(f"{spec.path}: op '{spec.op}', template {spec.template}: no template {e.name!r} in "
                        f"{template_dir}", "create it or fix the name") from None
    except (TypeError, ValueError, ArithmeticError) as e:
        raise SpecError(f"{_template_line(e, template_dir, spec.template)}: {type(e).__name__}: {e} "
                        f"(variant {variant.name})", "fix the template expression") from None
    missing = [b.name for b in bindings if b.name not in declared]
    if missing:
        raise SpecError(f"{spec.path}: op '{spec.op}', template {spec.template}: never declares binding(s) "
                        f"{missing}", "call bind() for every binding in the spec")
    return src


def _template_line(err: BaseException, template_dir: Path, name: str) -> str:
    """``<template path>:<line>`` of the innermost template frame in ``err``'s traceback (Jinja maps them)."""
    where = str(template_dir / name)
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where
