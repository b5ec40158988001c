"""runtime/spirv.py: the shared memory a compiled kernel declares, and what the runtime does with it.

Small shaders compiled with glslc (CI installs it; skipped without it, saying so) whose shared
variables have sizes worked out by hand; the build's record of every kernel against the module it
wrote; malformed modules as one clear error; a kernel needing more shared memory than the device has
refused before any pipeline is made.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gemforge.gen import manifest as mf
from gemforge.runtime.errors import DeviceError, GemforgeError
from gemforge.runtime.spirv import workgroup_bytes

HEAD = "#version 450\nlayout(local_size_x = 64) in;\nlayout(std430, binding = 0) buffer B { float o[]; };\n"


def compile_comp(tmp_path: Path, body: str) -> bytes:
    if shutil.which("glslc") is None:
        pytest.skip("glslc is not installed here (Debian package glslc)")
    src = tmp_path / "k.comp"
    src.write_text(HEAD + body)
    out = tmp_path / "k.spv"
    subprocess.run(["glslc", "--target-env=vulkan1.2", "-o", str(out), str(src)], check=True)
    return out.read_bytes()


@pytest.mark.parametrize("decls,use,want", [
    ("", "o[0] = 1.0;", 0),
    ("shared vec4 a[10];", "a[gl_LocalInvocationIndex % 10u] = vec4(1.0); o[0] = a[3].x;", 160),
    ("shared float b[3][5]; shared uvec2 c[7];", "b[1][2] = 1.0; c[0] = uvec2(1u); o[0] = b[1][2] + float(c[0].x);",
     60 + 56),
    ("struct S { float x; uvec2 y; }; shared S s[4]; shared int n;", "s[1].x = 1.0; n = 2; o[0] = s[1].x + float(n);",
     4 * 12 + 4),
])
def test_workgroup_bytes_of_compiled_shaders(tmp_path, decls, use, want):
    spirv = compile_comp(tmp_path, f"{decls}\nvoid main() {{ {use} }}\n")
    assert workgroup_bytes(spirv) == want


def test_the_build_records_every_kernels_shared_memory(build):
    man = mf.load(build)
    arts = [a for a in man.artifacts.values() if a.target == "vulkan"]
    assert arts
    for a in arts:
        assert a.extra["shared_bytes"] == workgroup_bytes((Path(build) / a.file).read_bytes(), a.name), a.name
    # a kernel with shared memory is seen as such: rmsnorm's workgroup sums
    assert next(a for a in arts if a.name == "rmsnorm_add_norm").extra["shared_bytes"] > 0


@pytest.mark.parametrize("data,message", [
    (b"\x03\x02\x23\x07" * 3, "k: 12 bytes is not a SPIR-V module"),
    (b"\x00\x00\x00\x00" * 8, "k: not a SPIR-V module \\(magic 0x0\\)"),
    (b"\x03\x02\x23\x07" + b"\x00" * 16 + b"\x00\x00\x00\x00", r"k: malformed SPIR-V \(an instruction of length 0\)"),
])
def test_malformed_modules_are_one_clear_error(data, message):
    with pytest.raises(GemforgeError, match=message):
        workgroup_bytes(data, "k")


def test_a_kernel_over_the_shared_memory_limit_is_refused(tmp_path, device):
    words = device.info.max_shared_memory // 4 + 1
    spirv = compile_comp(tmp_path, f"shared float big[{words}];\n"
                                   "void main() { big[gl_LocalInvocationIndex] = 1.0; o[0] = big[7]; }\n")
    art = mf.Artifact(name="too_big", op="t", target="vulkan", file="", source="", values={}, axes={},
                      bindings=[{"binding": 0, "name": "o", "access": "write"}], push_constants=[], push_size=0,
                      workgroup_size=[64, 1, 1], hash="")
    from gemforge.runtime.vulkan import Program
    with pytest.raises(DeviceError, match=f"kernel too_big needs {4 * words} bytes of shared memory; "
                                          f".* has {device.info.max_shared_memory}"):
        Program(device, art, spirv)
