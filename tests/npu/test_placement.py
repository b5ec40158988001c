"""Placements: phoenix (matrix products on the NPU, the rest on the iGPU) is strict and lists every missing
piece before any work starts; vulkan (the default) runs everything on the GPU."""
from __future__ import annotations

import shutil
import sys

import pytest

from gemforge.gen import manifest as mf
from gemforge.gen.npu import pin
from gemforge.runtime import paths
from gemforge.runtime.cli import main
from gemforge.runtime.errors import DeviceError, SpecError
from gemforge.runtime.placement import check_placement, load_placement, placement_names


@pytest.fixture
def no_npu(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyxrt", None)
    monkeypatch.setattr(pin, "DEVICE_NODE", str(tmp_path / "accel0"))


def test_the_shipped_placements():
    assert {"phoenix", "vulkan"} <= set(placement_names())
    p = load_placement("phoenix")
    assert p.strict and p.target("matmul") == "npu" and p.target("matvec") == "npu" and p.target("attention") == "vulkan"
    assert p.describe() == "placement phoenix: matmul, matvec on npu; everything else on vulkan"
    assert load_placement("vulkan").describe() == "placement vulkan: every op on vulkan"


def test_phoenix_lists_every_missing_piece(no_npu, tmp_path):
    bd = tmp_path / "build"
    mf.save(mf.Manifest(), bd)
    with pytest.raises(DeviceError) as e:
        check_placement("phoenix", "270m", build_dir=bd)
    msg = str(e.value)
    assert e.value.exit_code == 4
    assert "pyxrt" in msg and "accel0 does not exist" in msg and "no NPU designs in" in msg
    assert msg.count("\n  - ") >= 3


def test_phoenix_with_an_uncompiled_build_names_the_model_xclbin(no_npu, tmp_path):
    from gemforge.gen.npu.build import build_npu
    bd = tmp_path / "build"
    build_npu(bd, ops={"matvec", "matmul"}, log=lambda s: None)
    with pytest.raises(DeviceError) as e:
        check_placement("phoenix", "270m", build_dir=bd)
    msg = str(e.value)
    assert "25 of 25 NPU designs are rendered and checked but not compiled" in msg     # 270M: 20 prefill + 5 decode
    assert f"no xclbin for gemma3-270m at {bd / 'npu' / 'gemma3-270m.xclbin'}" in msg


def test_vulkan_needs_nothing_extra():
    assert check_placement("vulkan").name == "vulkan"


def test_run_with_phoenix_exits_before_any_work(no_npu, capsys):
    rc = main(["run", "--prompt", "The capital of France is", "--placement", "phoenix"])
    err = capsys.readouterr()
    assert rc == 4 and err.out == ""
    assert "placement 'phoenix' cannot run on this machine; missing:" in err.err and "pyxrt" in err.err


@pytest.mark.parametrize("edit, message", [
    ("  matvec: npu\n", "field 'ops.matvex': not an op in configs/ops"),
    ("default: vulkan", "field 'default': unknown target 'gpu'"),
    ("name: phoenix", "field 'name': must be 'phoenix' (the file name), got 'phonix'"),
    ("  matmul: npu\n", "field 'ops.rmsnorm': placed on the npu, but"),
])
def test_placement_errors_name_file_and_field(tmp_path, edit, message):
    cfg = tmp_path / "configs"
    shutil.copytree(paths.configs_dir(), cfg, ignore=shutil.ignore_patterns("__pycache__"))
    f = cfg / "placement" / "phoenix.yaml"
    bad = {"  matvec: npu\n": "  matvex: npu\n", "default: vulkan": "default: gpu", "name: phoenix": "name: phonix",
           "  matmul: npu\n": "  matmul: npu\n  rmsnorm: npu\n"}[edit]
    f.write_text(f.read_text().replace(edit, bad, 1))
    with pytest.raises(SpecError) as e:
        load_placement("phoenix", cfg)
    assert f"{f}: {message}" in str(e.value)


def test_unknown_placement():
    with pytest.raises(SpecError, match=r"no placement 'tpu'.*known placements: .*phoenix"):
        load_placement("tpu")
