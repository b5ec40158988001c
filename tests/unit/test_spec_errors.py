"""Bad specs, tuning files and templates: each fails with one exact message naming file, op and field.

Every case goes through `build()` (what `gemforge kernels` runs) and through the CLI, which must print
it as one line on stderr and exit with 2, without a traceback.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from gemforge.runtime.cli import main
from gemforge.runtime.errors import SpecError

from .conftest import COPY_TMPL, COPY_YAML, SCALE_YAML

BUCKETS_HINT = "buckets are powers of two from 16 to 256: 16, 32, 64, 128, 256"


def _copy_with_axis(axis: str, values: str, name: str) -> str:
    return (COPY_YAML.replace('name: "copy_w{width}"', f'name: "{name}"')
            .replace("  width: [1, 4]", f"  width: [1, 4]\n  {axis}: {values}"))


# id: (file under the project, its new text, message, hint); "{root}" stands for the project directory
CASES = {
    "yaml-syntax": (
        "configs/ops/scale.yaml", SCALE_YAML.replace("{name: x, access: read}", "{name: x, access: read"),
        "{root}/configs/ops/scale.yaml: malformed YAML at line 7, column 5: expected ',' or '}', but got '{'",
        "fix the YAML syntax"),
    "unknown-key": (
        "configs/ops/scale.yaml", SCALE_YAML.replace("summary:", "sumary:"),
        "{root}/configs/ops/scale.yaml: op 'scale', field 'sumary': unknown key",
        "allowed keys: axes, bindings, compiler, constraints, name, npu, op, params, push_constants, requires, "
        "summary, template, tolerance, tuning"),
    "unknown-compiler": (
        "configs/ops/scale.yaml", SCALE_YAML + "compiler: nvcc\n",
        "{root}/configs/ops/scale.yaml: op 'scale', field 'compiler': unknown compiler 'nvcc'",
        "use one of glslc, glslang"),
    "unknown-feature": (
        "configs/ops/scale.yaml", SCALE_YAML + "requires: [tensor_cores]\n",
        "{root}/configs/ops/scale.yaml: op 'scale', field 'requires': unknown device feature 'tensor_cores'",
        "use one of cooperative_matrix, float16, int8, subgroup32, int_dot"),
    "wrong-type": (
        "configs/ops/scale.yaml", SCALE_YAML.replace("  wg_size: 64", "  wg_size: [64]"),
        "{root}/configs/ops/scale.yaml: op 'scale', field 'params.wg_size': default must be a number or string, "
        "got [64]", None),
    "wrong-type-list": (
        "configs/ops/copy.yaml", COPY_YAML.replace("  width: [1, 4]", "  width: 4"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'axes.width': must be a non-empty list, got 4", None),
    "bucket-out-of-range": (
        "configs/ops/copy.yaml", _copy_with_axis("bucket", "[16, 512]", "copy_w{width}_b{bucket}"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'axes.bucket': bucket 512 is outside 16..256", BUCKETS_HINT),
    "bucket-not-power-of-two": (
        "configs/ops/copy.yaml", _copy_with_axis("bucket", "[16, 48]", "copy_w{width}_b{bucket}"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'axes.bucket': bucket 48 is not a power of two",
        BUCKETS_HINT),
    "unknown-dtype": (
        "configs/ops/copy.yaml", _copy_with_axis("dtype", "[f32, bf16]", "copy_w{width}_{dtype}"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'axes.dtype': unknown dtype 'bf16'", "known dtypes: f32, f16"),
    "unknown-format": (
        "configs/ops/copy.yaml", _copy_with_axis("format", "[q8_0, q5_k]", "copy_w{width}_{format}"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'axes.format': unknown weight format 'q5_k'",
        "known formats: f32, f16, q8_0, q4_0"),
    "unknown-template": (
        "configs/ops/copy.yaml", COPY_YAML.replace("template: copy.comp.j2", "template: cpy.comp.j2"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'template': no template 'cpy.comp.j2' in {root}/templates/glsl",
        "create it or fix the name"),
    "constraint-unknown-name": (
        "configs/ops/scale.yaml", SCALE_YAML.replace('"wg_size % 32 == 0"', '"wg_sz % 32 == 0"'),
        "{root}/configs/ops/scale.yaml: op 'scale', field 'constraints[0]': 'wg_sz % 32 == 0' names wg_sz, "
        "not an axis or param", None),
    "constraint-fails-to-evaluate": (
        "configs/ops/scale.yaml", SCALE_YAML.replace('"wg_size % 32 == 0"', '"mode > 3"'),
        "{root}/configs/ops/scale.yaml: op 'scale', field 'constraints[0]': 'mode > 3' fails for "
        "{'mode': 'plain', 'wg_size': 64}: '>' not supported between instances of 'str' and 'int'",
        "fix the expression"),
    "duplicate-op": (
        "configs/ops/copy.yaml", COPY_YAML.replace("op: copy", "op: scale"),
        "{root}/configs/ops/scale.yaml: op 'scale', field 'op': already defined in {root}/configs/ops/copy.yaml", None),
    "name-misses-axis": (
        "configs/ops/copy.yaml", COPY_YAML.replace('name: "copy_w{width}"', 'name: "copy"'),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'name': does not mention axis 'width', so artifact names "
        "would collide", None),
    "missing-field": (
        "configs/ops/copy.yaml", COPY_YAML.replace('name: "copy_w{width}"\n', ""),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'name': missing required field", None),
    "tuning-param-undeclared": (
        "configs/ops/scale.yaml", SCALE_YAML.replace("vulkan: {wg_size: [32, 64, 128]}", "vulkan: {wg: [32, 64]}"),
        "{root}/configs/ops/scale.yaml: op 'scale', field 'tuning.vulkan.wg': 'wg' is not a declared param",
        "declare it under params"),
    "binding-glsl-keyword": (
        "configs/ops/copy.yaml", COPY_YAML.replace("{name: dst, access: write}", "{name: out, access: write}"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'bindings[1].name': 'out' is a reserved word in GLSL",
        "rename the binding (e.g. 'y' or 'dst' for an output)"),
    "push-constant-glsl-reserved": (
        "configs/ops/copy.yaml", COPY_YAML.replace("{name: n, type: uint}", "{name: gl_n, type: uint}"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'push_constants[0].name': 'gl_n' is a reserved word in GLSL",
        "rename the push constant"),
    "push-constant-type": (
        "configs/ops/copy.yaml", COPY_YAML.replace("type: uint", "type: u32"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'push_constants[0].type': unknown type 'u32'",
        "use one of uint, int, float"),
    "binding-access": (
        "configs/ops/copy.yaml", COPY_YAML.replace("{name: dst, access: write}", "{name: dst, access: rw}"),
        "{root}/configs/ops/copy.yaml: op 'copy', field 'bindings[1].access': unknown access 'rw'",
        "use one of read, write, readwrite, coherent"),
    "top-level-not-mapping": (
        "configs/ops/copy.yaml", "- op: copy\n",
        "{root}/configs/ops/copy.yaml: the top level must be a mapping of fields, got list", None),
    "tuning-file-unknown-artifact": (
        "configs/tuning/dev.yaml", "entries:\n  scale:\n    scale_mul: {wg_size: 32}\n",
        "tuning file dev.yaml, field 'entries.scale.scale_mul': op 'scale' has no artifact 'scale_mul'",
        "its artifacts: scale_plain, scale_add; remove or rename the entry"),
    "tuning-file-undeclared-param": (
        "configs/tuning/dev.yaml", "entries:\n  scale:\n    scale_add: {wg: 32}\n",
        "{root}/configs/ops/scale.yaml: op 'scale', field 'params': tuning 'dev' sets 'wg', which is not a "
        "declared param", "declare it under params, or fix configs/tuning/dev.yaml"),
    "tuning-file-unknown-op": (
        "configs/tuning/dev.yaml", "entries:\n  scael: {}\n",
        "{root}/configs/tuning/dev.yaml: field 'entries.scael': unknown op", "known: copy, scale"),
    "tuning-file-violates-constraints": (
        "configs/tuning/dev.yaml", "entries:\n  scale:\n    scale_add: {wg_size: 48}\n",
        "tuning file dev.yaml, field 'entries.scale.scale_add': {'wg_size': 48} violates the constraints of op "
        "'scale': ['wg_size % 32 == 0']", "choose values the spec allows"),
    "tuning-file-wrong-type": (
        "configs/tuning/dev.yaml", "entries:\n  scale: [scale_add]\n",
        "{root}/configs/tuning/dev.yaml: field 'entries.scale': must be a mapping of artifact name to "
        "{param: value}, got ['scale_add']", None),
    "tuning-file-yaml-syntax": (
        "configs/tuning/dev.yaml", "entries:\n  scale: {scale_add: {wg_size: 32}\n",
        "{root}/configs/tuning/dev.yaml: malformed YAML at line 3, column 1: expected ',' or '}', but got "
        "'<stream end>'", "fix the YAML syntax"),
    "template-undefined-variable": (
        "templates/glsl/copy.comp.j2", COPY_TMPL.replace("{{ wg_size }}", "{{ wg_sz }}"),
        "{root}/configs/ops/copy.yaml: op 'copy', template copy.comp.j2: 'wg_sz' is undefined (variant copy_w1)",
        "declare it as an axis or param in the spec"),
    "template-syntax": (
        "templates/glsl/copy.comp.j2", COPY_TMPL.replace("{% set T", "{% sett T"),
        "{root}/templates/glsl/copy.comp.j2:3: template syntax error: Encountered unknown tag 'sett'.", None),
    "template-missing-include": (
        "templates/glsl/copy.comp.j2", COPY_TMPL.replace("common.glsl.j2", "comon.glsl.j2"),
        "{root}/templates/glsl/comon.glsl.j2: cannot read template (included by copy.comp.j2): "
        "No such file or directory", None),
    "template-type-error": (
        "templates/glsl/copy.comp.j2", COPY_TMPL.replace("{{ wg_size }}", "{{ wg_size // 'a' }}"),
        "{root}/templates/glsl/copy.comp.j2:2: TypeError: unsupported operand type(s) for //: 'int' and 'str' "
        "(variant copy_w1)", "fix the template expression"),
    "template-binding-undeclared": (
        "templates/glsl/copy.comp.j2", COPY_TMPL.replace("{{ bind('dst', T) }}\n", ""),
        "{root}/configs/ops/copy.yaml: op 'copy', template copy.comp.j2: never declares binding(s) ['dst']",
        "call bind() for every binding in the spec"),
    "template-binding-unknown": (
        "templates/glsl/copy.comp.j2", COPY_TMPL.replace("{{ bind('dst', T) }}", "{{ bind('dst', T) }}\n{{ bind('z', T) }}"),
        "{root}/configs/ops/copy.yaml: op 'copy', template copy.comp.j2: binds 'z', which variant copy_w1 does not "
        "have (its bindings: ['src', 'dst'])", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_has_one_exact_message(project, case, capsys):
    rel, text, message, hint = CASES[case]
    project.write(rel, text)
    message = message.replace("{root}", str(project.root))
    with pytest.raises(SpecError) as err:
        project.build()
    assert (err.value.message, err.value.hint) == (message, hint)

    assert main(project.cli()) == 2
    out, errout = capsys.readouterr()
    want = f"gemforge: error: {message}" + (f" (fix: {hint})" if hint else "")
    assert errout == want + "\n"
    assert not (project.build_dir / "manifest.json").exists()


def test_cli_process_prints_no_traceback(project):
    """The real process: exit 2, one line on stderr, nothing on stdout."""
    project.write("configs/ops/copy.yaml", COPY_YAML.replace("  width: [1, 4]", "  width: [1, 4]\n  wat: 1"))
    proc = subprocess.run([sys.executable, "-m", "gemforge.runtime.cli", *project.cli()], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"gemforge: error: {project.ops / 'copy.yaml'}: op 'copy', field 'axes.wat': ")


def test_unknown_op_on_command_line(project, capsys):
    assert main(project.cli("--op", "scael")) == 2
    assert capsys.readouterr().err == (f"gemforge: error: no op named scael in {project.ops} "
                                       "(fix: known ops: copy, scale)\n")
