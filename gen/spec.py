"""Op specs: ``configs/ops/*.yaml`` loaded into frozen dataclasses, validated once.

A spec declares one kernel family:

```yaml
op: rmsnorm                       # unique op name
template: rmsnorm.comp.j2         # file under templates/glsl/
summary: one line
name: "rmsnorm_{mode}"            # artifact name, a format string over the axes
bindings:                         # storage buffers, in binding order
  - {name: x, access: read}
push_constants:                   # packed in order, 4 bytes each
  - {name: rows, type: uint}
axes:                             # variant axes: the product is built...
  mode: [plain, add]
  head_dim: {from_model: head_dim}   # ...values taken from the configured models
  input: {values: [plain, geglu], in_name: {plain: "", geglu: _geglu}}   # ...what {input} writes in the name
params:                           # compile-time parameters with defaults (tunable)
  wg_size: 256
constraints: ["wg_size % 32 == 0"]   # filter the product (axes and params in scope)
tuning:                           # per target: the values `gemforge tune` sweeps
  vulkan: {wg_size: [64, 128, 256]}
tolerance: {f32: 1e-5}            # test tolerance per dtype/format (relative to max |ref|)
compiler: glslc                   # glslc (default) or glslang (glslangValidator: KHR cooperative matrix)
requires: [cooperative_matrix]    # device features the kernel needs (see DEVICE_FEATURES)
```

Every error names the file, the op and the field, and says what is allowed.
"""
from __future__ import annotations

import ast
import itertools
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from gemforge.runtime.errors import SpecError

FORMATS = ("f32", "f16", "q8_0", "q4_0")
DTYPES = ("f32", "f16")
BUCKETS = (16, 32, 64, 128, 256)
ACCESS = ("read", "write", "readwrite", "coherent")   # coherent: read-write, other workgroups' writes visible
PUSH_TYPES = ("uint", "int", "float")
TARGETS = ("vulkan", "npu")
SPEC_KEYS = {
    "op", "template", "summary", "name", "bindings", "push_constants", "axes", "params",
    "constraints", "tuning", "tolerance", "npu", "compiler", "requires",
}
COMPILERS = ("glslc", "glslang")
# Device features a kernel may require (runtime/vulkan.py DeviceInfo.features): a device without one
# of them runs the op's portable sibling, and the run says so.
DEVICE_FEATURES = ("cooperative_matrix", "float16", "int8", "subgroup32", "int_dot")
REQUIRED_KEYS = ("op", "template", "name", "bindings", "axes")
# Axis names whose values are checked against a known vocabulary.
FORMAT_AXES = ("format", "wformat")
DTYPE_AXES = ("dtype", "kv_dtype", "act_dtype")
MODEL_FIELDS = ("hidden", "ffn", "head_dim", "n_heads", "n_kv_heads", "vocab", "window")
# Names a binding or push constant cannot have: they become GLSL identifiers (GLSL 4.50 keywords and
# reserved words; names starting with gl_ are reserved too).
GLSL_RESERVED = frozenset("""
    attribute const uniform varying buffer shared coherent volatile restrict readonly writeonly atomic_uint
    layout centroid flat smooth noperspective patch sample break continue do for while switch case default if
    else subroutine in out inout float double int void bool true false invariant precise discard return mat2
    mat3 mat4 dmat2 dmat3 dmat4 vec2 vec3 vec4 ivec2 ivec3 ivec4 bvec2 bvec3 bvec4 dvec2 dvec3 dvec4 uint
    uvec2 uvec3 uvec4 lowp mediump highp precision struct main common partition active asm class union enum
    typedef template this resource goto inline noinline public static extern external interface long short
    half fixed unsigned superp input output hvec2 hvec3 hvec4 fvec2 fvec3 fvec4 sampler3DRect filter sizeof
    cast namespace using
""".split())


def _where(path: Path | str, op: str | None, fieldname: str) -> str:
    return f"{path}: op '{op or '?'}', field '{fieldname}'"


@dataclass(frozen=True)
class Binding:
    name: str
    access: str
    when: str | None = None     # a constraint expression: the binding exists only in variants where it holds


@dataclass(frozen=True)
class PushConstant:
    name: str
    type: str


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple = ()
    from_model: str | None = None
    in_name: tuple | None = None    # ((value, text), ...): what the artifact name writes for each value

    def name_text(self, value) -> Any:
        """What ``{axis}`` in the artifact name becomes for ``value`` (the value itself unless in_name maps it)."""
        return dict(self.in_name)[value] if self.in_name is not None else value


@dataclass(frozen=True)
class OpSpec:
    op: str
    path: Path
    template: str
    summary: str
    name: str
    bindings: tuple[Binding, ...]
    push_constants: tuple[PushConstant, ...]
    axes: tuple[Axis, ...]
    params: Mapping[str, Any]
    constraints: tuple[str, ...]
    tuning: Mapping[str, Mapping[str, tuple]]
    tolerance: Mapping[str, float]
    npu: Mapping[str, Any] | None
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    compiler: str = "glslc"
    requires: tuple[str, ...] = ()

    def active_bindings(self, values: Mapping[str, Any]) -> tuple[Binding, ...]:
        """The bindings a variant has, in binding order (``when`` evaluated on its values)."""
        return tuple(b for b in self.bindings if b.when is None or _Expr(b.when)(values))

    def artifact_name(self, values: Mapping[str, Any]) -> str:
        return self.name.format(**{**values, **{a.name: a.name_text(values[a.name]) for a in self.axes}})


class _Expr:
    """A tiny, safe evaluator for constraint expressions (arithmetic, comparison, and/or/not, in, min, max)."""

    _BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
            ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Div: operator.truediv,
            ast.Pow: operator.pow}
    _CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
            ast.NotIn: lambda a, b: a not in b}
    _CALLS = {"min": min, "max": max}

    def __init__(self, text: str):
        self.text = text
        self.tree = ast.parse(text, mode="eval")
        self.names = {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                if not (isinstance(node.func, ast.Name) and node.func.id in self._CALLS and node.args
                        and not node.keywords):
                    raise ValueError("only min(...) and max(...) calls are allowed in a constraint")
                self.names.discard(node.func.id)
                continue
            if not isinstance(node, (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not,
                                     ast.USub, ast.BinOp, ast.Compare, ast.Name, ast.Load, ast.Constant,
                                     ast.Tuple, ast.List, *self._BIN, *self._CMP)):
                raise ValueError(f"'{type(node).__name__}' is not allowed in a constraint")

    def __call__(self, env: Mapping[str, Any]) -> bool:
        return bool(self._eval(self.tree.body, env))

    def _eval(self, n, env):
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.Name):
            return env[n.id]
        if isinstance(n, (ast.Tuple, ast.List)):
            return tuple(self._eval(e, env) for e in n.elts)
        if isinstance(n, ast.UnaryOp):
            v = self._eval(n.operand, env)
            return (not v) if isinstance(n.op, ast.Not) else -v
        if isinstance(n, ast.BoolOp):
            vals = (self._eval(v, env) for v in n.values)
            return all(vals) if isinstance(n.op, ast.And) else any(vals)
        if isinstance(n, ast.BinOp):
            return self._BIN[type(n.op)](self._eval(n.left, env), self._eval(n.right, env))
        if isinstance(n, ast.Call):
            return self._CALLS[n.func.id](*(self._eval(a, env) for a in n.args))
        if isinstance(n, ast.Compare):
            left = self._eval(n.left, env)
            for op, comp in zip(n.ops, n.comparators):
                right = self._eval(comp, env)
                if not self._CMP[type(op)](left, right):
                    return False
                left = right
            return True
        raise ValueError(type(n).__name__)


def load_yaml(path: Path) -> Any:
    """Parsed YAML; a syntax error is a SpecError with its line and column."""
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{path}: malformed YAML{at}: {problem}", "fix the YAML syntax") from None


def _glsl_reserved(name: str) -> bool:
    return name in GLSL_RESERVED or name.startswith("gl_")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_axis_values(path, op, name, values):
    if name in FORMAT_AXES:
        for v in values:
            if v not in FORMATS:
                raise SpecError(f"{_where(path, op, 'axes.' + name)}: unknown weight format {v!r}",
                                f"known formats: {', '.join(FORMATS)}")
    if name in DTYPE_AXES:
        for v in values:
            if v not in DTYPES:
                raise SpecError(f"{_where(path, op, 'axes.' + name)}: unknown dtype {v!r}",
                                f"known dtypes: {', '.join(DTYPES)}")
    if name == "bucket":
        for v in values:
            if not _is_int(v) or v not in BUCKETS:
                why = ("is not an integer" if not _is_int(v) else "is outside 16..256" if not 16 <= v <= 256
                       else "is not a power of two")
                raise SpecError(f"{_where(path, op, 'axes.bucket')}: bucket {v!r} {why}",
                                "buckets are powers of two from 16 to 256: " + ", ".join(map(str, BUCKETS)))
    if len(set(map(repr, values))) != len(values):
        raise SpecError(f"{_where(path, op, 'axes.' + name)}: repeated values {list(values)}")


def parse_spec(data: Any, path: Path | str, templates: Path | None = None) -> OpSpec:
    """Validate one spec's parsed YAML. ``templates`` (the glsl template dir) checks the template exists."""
    path = Path(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping of fields, got {type(data).__name__}")
    op = data.get("op")
    if not isinstance(op, str) or not op.isidentifier():
        raise SpecError(f"{_where(path, None, 'op')}: must be an identifier string, got {op!r}")
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise SpecError(f"{_where(path, op, unknown[0])}: unknown key", f"allowed keys: {', '.join(sorted(SPEC_KEYS))}")
    for k in REQUIRED_KEYS:
        if k not in data:
            raise SpecError(f"{_where(path, op, k)}: missing required field")

    def want(cond, fieldname, msg, hint=None):
        if not cond:
            raise SpecError(f"{_where(path, op, fieldname)}: {msg}", hint)

    template = data["template"]
    want(isinstance(template, str) and template.endswith(".comp.j2"), "template",
         f"must be a file name ending in .comp.j2, got {template!r}")
    if templates is not None:
        want((templates / template).is_file(), "template", f"no template {template!r} in {templates}",
             "create it or fix the name")
    summary = data.get("summary", "")
    want(isinstance(summary, str), "summary", "must be a string")

    bindings = data["bindings"]
    want(isinstance(bindings, list) and bindings, "bindings", "must be a non-empty list of {name, access}")
    bl = []
    for i, b in enumerate(bindings):
        f = f"bindings[{i}]"
        want(isinstance(b, dict) and set(b) <= {"name", "access", "when"} and "name" in b and "access" in b, f,
             f"must be a mapping with 'name', 'access' and optionally 'when', got {b!r}")
        want(isinstance(b["name"], str) and b["name"].isidentifier(), f + ".name", f"not an identifier: {b['name']!r}")
        want(not _glsl_reserved(b["name"]), f + ".name", f"{b['name']!r} is a reserved word in GLSL",
             "rename the binding (e.g. 'y' or 'dst' for an output)")
        want(b["access"] in ACCESS, f + ".access", f"unknown access {b['access']!r}", f"use one of {', '.join(ACCESS)}")
        when = b.get("when")
        want(when is None or isinstance(when, str), f + ".when", "must be an expression string")
        bl.append(Binding(b["name"], b["access"], when))
    want(len({b.name for b in bl}) == len(bl), "bindings", "binding names repeat")

    pcs = data.get("push_constants", []) or []
    want(isinstance(pcs, list), "push_constants", "must be a list of {name, type}")
    pl = []
    for i, p in enumerate(pcs):
        f = f"push_constants[{i}]"
        want(isinstance(p, dict) and set(p) == {"name", "type"}, f, f"must be a mapping with 'name' and 'type', got {p!r}")
        want(isinstance(p["name"], str) and p["name"].isidentifier(), f + ".name", f"not an identifier: {p['name']!r}")
        want(not _glsl_reserved(p["name"]), f + ".name", f"{p['name']!r} is a reserved word in GLSL",
             "rename the push constant")
        want(p["type"] in PUSH_TYPES, f + ".type", f"unknown type {p['type']!r}", f"use one of {', '.join(PUSH_TYPES)}")
        pl.append(PushConstant(p["name"], p["type"]))
    want(len({p.name for p in pl}) == len(pl), "push_constants", "names repeat")
    want(len(pl) * 4 <= 128, "push_constants", f"{len(pl) * 4} bytes exceed the 128 bytes every Vulkan device guarantees")

    axes = data["axes"]
    want(isinstance(axes, dict), "axes", "must be a mapping of axis name to a list of values or {from_model: field}")
    al = []
    for name, vals in axes.items():
        f = f"axes.{name}"
        want(isinstance(name, str) and name.isidentifier(), f, "axis names must be identifiers")
        if isinstance(vals, dict) and "values" in vals:
            want(set(vals) == {"values", "in_name"}, f,
                 f"a mapping axis with 'values' takes 'values' and 'in_name', got {sorted(vals)}")
            vl, nm = vals["values"], vals["in_name"]
            want(isinstance(vl, list) and vl and all(isinstance(v, str) for v in vl), f + ".values",
                 f"must be a non-empty list of strings, got {vl!r}")
            _check_axis_values(path, op, name, vl)
            want(isinstance(nm, dict) and set(nm) == set(vl) and all(isinstance(t, str) for t in nm.values()),
                 f + ".in_name", f"must map each of {vl} to the text the artifact name writes for it, got {nm!r}")
            want(len(set(nm.values())) == len(nm), f + ".in_name",
                 f"two values write the same text {nm!r}, so artifact names would collide")
            al.append(Axis(name, tuple(vl), None, tuple((v, nm[v]) for v in vl)))
        elif isinstance(vals, dict):
            want(set(vals) == {"from_model"}, f, f"a mapping axis takes only 'from_model' (or 'values' and "
                 f"'in_name'), got {sorted(vals)}")
            want(vals["from_model"] in MODEL_FIELDS, f + ".from_model", f"unknown model field {vals['from_model']!r}",
                 f"use one of {', '.join(MODEL_FIELDS)}")
            al.append(Axis(name, (), vals["from_model"]))
        else:
            want(isinstance(vals, list) and vals, f, f"must be a non-empty list, got {vals!r}")
            want(all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in vals), f,
                 "values must be strings or integers")
            _check_axis_values(path, op, name, vals)
            al.append(Axis(name, tuple(vals)))

    params = data.get("params", {}) or {}
    want(isinstance(params, dict), "params", "must be a mapping of name to default value")
    for k, v in params.items():
        want(isinstance(k, str) and k.isidentifier(), f"params.{k}", "not an identifier")
        want(_is_int(v) or isinstance(v, (float, str)), f"params.{k}", f"default must be a number or string, got {v!r}")
        want(k not in axes, f"params.{k}", "is also an axis")

    name = data["name"]
    want(isinstance(name, str), "name", "must be a format string such as 'matvec_{format}'")
    try:
        name.format(**{a.name: "x" for a in al})
    except (KeyError, IndexError, ValueError) as e:
        raise SpecError(f"{_where(path, op, 'name')}: {name!r} uses {e} which is not an axis") from None
    for a in al:
        want("{" + a.name + "}" in name, "name", f"does not mention axis '{a.name}', so artifact names would collide")

    constraints = data.get("constraints", []) or []
    want(isinstance(constraints, list) and all(isinstance(c, str) for c in constraints), "constraints",
         "must be a list of expression strings")
    scope = {a.name for a in al} | set(params)
    for i, c in enumerate(constraints):
        try:
            e = _Expr(c)
        except (SyntaxError, ValueError) as err:
            raise SpecError(f"{_where(path, op, f'constraints[{i}]')}: cannot parse {c!r}: {err}") from None
        missing = e.names - scope
        want(not missing, f"constraints[{i}]", f"{c!r} names {', '.join(sorted(missing))}, not an axis or param")

    for i, b in enumerate(bl):
        if b.when is None:
            continue
        try:
            e = _Expr(b.when)
        except (SyntaxError, ValueError) as err:
            raise SpecError(f"{_where(path, op, f'bindings[{i}].when')}: cannot parse {b.when!r}: {err}") from None
        missing = e.names - scope
        want(not missing, f"bindings[{i}].when", f"{b.when!r} names {', '.join(sorted(missing))}, not an axis or param")

    tuning = data.get("tuning", {}) or {}
    want(isinstance(tuning, dict), "tuning", "must be a mapping of target to {param: [values]}")
    tl = {}
    for target, space in tuning.items():
        want(target in TARGETS, f"tuning.{target}", f"unknown target {target!r}", f"use one of {', '.join(TARGETS)}")
        want(isinstance(space, dict), f"tuning.{target}", "must be a mapping of param to list of values")
        for k, vs in space.items():
            want(k in params, f"tuning.{target}.{k}", f"'{k}' is not a declared param", "declare it under params")
            want(isinstance(vs, list) and vs, f"tuning.{target}.{k}", "must be a non-empty list")
        tl[target] = {k: tuple(vs) for k, vs in space.items()}

    tol = data.get("tolerance", {}) or {}
    want(isinstance(tol, dict), "tolerance", "must be a mapping of dtype/format to a number")
    for k, v in tol.items():
        want(k in FORMATS or k in DTYPES, f"tolerance.{k}", f"unknown dtype or format {k!r}")
        want(isinstance(v, (int, float)) and v > 0, f"tolerance.{k}", f"must be a positive number, got {v!r}")

    npu = data.get("npu")
    want(npu is None or isinstance(npu, dict), "npu", "must be a mapping")

    compiler = data.get("compiler", "glslc")
    want(compiler in COMPILERS, "compiler", f"unknown compiler {compiler!r}", f"use one of {', '.join(COMPILERS)}")
    requires = data.get("requires", []) or []
    want(isinstance(requires, list), "requires", f"must be a list of device features, got {requires!r}")
    for r in requires:
        want(r in DEVICE_FEATURES, "requires", f"unknown device feature {r!r}", f"use one of {', '.join(DEVICE_FEATURES)}")

    return OpSpec(op=op, path=path, template=template, summary=summary, name=name, bindings=tuple(bl),
                  push_constants=tuple(pl), axes=tuple(al), params=dict(params), constraints=tuple(constraints),
                  tuning=tl, tolerance={k: float(v) for k, v in tol.items()}, npu=npu, raw=data,
                  compiler=compiler, requires=tuple(requires))


def load_spec(path: Path | str, templates: Path | None = None) -> OpSpec:
    path = Path(path)
    return parse_spec(load_yaml(path), path, templates)


def load_specs(ops_dir: Path, templates: Path | None = None) -> dict[str, OpSpec]:
    specs: dict[str, OpSpec] = {}
    for p in sorted(Path(ops_dir).glob("*.yaml")):
        s = load_spec(p, templates)
        if s.op in specs:
            raise SpecError(f"{p}: op '{s.op}', field 'op': already defined in {specs[s.op].path}")
        specs[s.op] = s
    return specs


@dataclass(frozen=True)
class Variant:
    """One concrete kernel: a spec with every axis and param fixed."""

    spec: OpSpec
    values: Mapping[str, Any]   # axes and params together
    tuning_key: str = "default"

    @property
    def name(self) -> str:
        base = self.spec.artifact_name(self.values)
        return base if self.tuning_key == "default" else f"{base}@{self.tuning_key}"

    @property
    def bindings(self) -> tuple[Binding, ...]:
        return self.spec.active_bindings(self.values)

    @property
    def axes(self) -> dict[str, Any]:
        return {a.name: self.values[a.name] for a in self.spec.axes}


def expand(spec: OpSpec, model_values: Mapping[str, tuple] | None = None,
           overrides: Mapping[str, Any] | None = None, tuning_key: str = "default") -> list[Variant]:
    """The variants a spec declares: the product of its axes, filtered by its constraints.

    ``model_values`` maps a model field (``head_dim``...) to the values found in the configured
    models, for ``from_model`` axes. ``overrides`` replaces param defaults (a tuning entry).
    """
    model_values = model_values or {}
    params = dict(spec.params)
    for k, v in (overrides or {}).items():
        if k not in params:
            raise SpecError(f"{_where(spec.path, spec.op, 'params')}: tuning '{tuning_key}' sets '{k}', which is "
                            f"not a declared param", f"declare it under params, or fix configs/tuning/{tuning_key}.yaml")
        params[k] = v
    lists = []
    for a in spec.axes:
        if a.from_model:
            vals = tuple(sorted(set(model_values.get(a.from_model, ()))))
            if not vals:
                raise SpecError(f"{_where(spec.path, spec.op, 'axes.' + a.name)}: no configured model provides "
                                f"'{a.from_model}'", "add a model under configs/models/")
        else:
            vals = a.values
        lists.append(vals)
    checks = [(f"constraints[{i}]", _Expr(c)) for i, c in enumerate(spec.constraints)]
    checks += [(f"bindings[{i}].when", _Expr(b.when)) for i, b in enumerate(spec.bindings) if b.when]
    out = []
    for combo in itertools.product(*lists):
        values = dict(zip((a.name for a in spec.axes), combo))
        values.update(params)
        for fieldname, c in checks:  # every expression must evaluate (a binding's `when` too)
            try:
                c(values)
            except (TypeError, ValueError, ArithmeticError) as e:
                raise SpecError(f"{_where(spec.path, spec.op, fieldname)}: {c.text!r} fails for {values}: {e}",
                                "fix the expression") from None
        if all(c(values) for f, c in checks if f.startswith("constraints")):
            out.append(Variant(spec, values, tuning_key))
    return out
