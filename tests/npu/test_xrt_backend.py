"""The XRT backend's host side (runtime/npu.py) against a recording stand-in for pyxrt (fake_pyxrt.py):
the pinned release's calling convention, buffer layouts and syncs, instruction loading, argument order,
and the errors when pyxrt or the NPU is missing.  Nothing here runs on an NPU."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from gemforge.gen import manifest as mf
from gemforge.gen.npu import layout, pin
from gemforge.gen.npu.build import Planned, _artifact
from gemforge.gen.npu.check import usage_and_violations
from gemforge.gen.npu.design import gemm_tiling, gemv_tiling
from gemforge.gen.npu.mlir import parse
from gemforge.runtime import npu
from gemforge.runtime.errors import DeviceError, GemforgeError

from . import fake_pyxrt
from .conftest import render

MODEL = "gemma3-test"


@pytest.fixture
def xrt(monkeypatch, tmp_path):
    fake_pyxrt.reset()
    monkeypatch.setitem(sys.modules, "pyxrt", fake_pyxrt)
    node = tmp_path / "accel0"
    node.write_text("")
    monkeypatch.setattr(pin, "DEVICE_NODE", str(node))
    return fake_pyxrt


@pytest.fixture
def build(tmp_path, rng):
    """A build dir with two compiled designs (gemm, gemv) in one xclbin, as the driver records them."""
    bd = tmp_path / "build"
    designs = {}
    arts = {}
    for i, t in enumerate([gemm_tiling(32, 256, 512, 64, 128, 256), gemv_tiling(256, 1024, 64, 128)]):
        r = render(t)
        p = Planned(r, [], usage_and_violations(parse(r.mlir))[0], "h", "matmul" if t.kind == "gemm" else "matvec")
        insts = rng.integers(0, 2**32, 40 + i, dtype=np.uint32)
        (bd / "npu" / p.name).mkdir(parents=True)
        (bd / "npu" / p.name / f"{p.name}.insts.bin").write_bytes(insts.tobytes())
        kname = p.name.upper()
        compiled = {"file": f"npu/{MODEL}.xclbin",
                    "xclbins": {MODEL: {"file": f"npu/{MODEL}.xclbin", "kernel": kname, "id": hex(0x901 + i)}}}
        arts[p.name] = _artifact(p, compiled)
        designs[t.kind] = (t, arts[p.name], insts, kname, r.mlir)
    mf.save(mf.Manifest(artifacts=arts), bd)
    (bd / "npu" / f"{MODEL}.xclbin").write_text(json.dumps(
        {"uuid": "uuid-1", "kernels": [d[3] for d in designs.values()]}))
    return bd, designs


def _register(xrt, designs):
    for t, art, insts, kname, mlir in designs.values():
        xrt.designs[kname] = {"mlir": mlir, "kind": t.kind}


def test_pinned_calling_convention_and_w8a8_result(xrt, build, rng):
    bd, designs = build
    _register(xrt, designs)
    t, art, insts, kname, _ = designs["gemm"]
    dev = npu.Device(bd / "npu" / f"{MODEL}.xclbin")
    w = rng.standard_normal((t.N, t.K)).astype(np.float32)
    x = rng.standard_normal((t.M, t.K)).astype(np.float32)
    lin = npu.W8A8Linear(dev, art, w, bd)
    xrt.calls.clear()
    y = lin(x)
    assert y.shape == (t.M, t.N) and y.view(np.uint32).tolist() == layout.w8a8_reference(x, w).view(np.uint32).tolist()

    run = [c for c in xrt.calls if c[0] == "run"]
    assert len(run) == 1
    _, name, opcode, insts_bo, n, args = run[0]
    assert (name, opcode, n) == (kname, pin.XRT_OPCODE, insts.size)
    assert insts_bo.flags == "cacheable" and insts_bo.group == (kname, pin.XRT_INSTR_GROUP)
    assert insts_bo.device_mem.view(np.uint32).tolist() == insts.tolist()        # the stream, synced to the device
    assert [a for a in args] == [lin.x.bo, lin.w.bo, lin.y.bo]                 # x, w, y: the design's arguments
    assert all(a.flags == "host_only" for a in args)
    assert args[1].host_mem.tolist() == layout.pack_weight(w, t).tolist()     # the weight layout the design reads
    # inputs synced to the device before the run, the output back after it
    i_run = xrt.calls.index(run[0])
    x_sync = max(i for i, c in enumerate(xrt.calls) if c[0] == "sync" and c[1] is args[0])
    y_sync = [i for i, c in enumerate(xrt.calls) if c[0] == "sync" and c[1] is args[2]]
    assert x_sync < i_run < y_sync[-1] and xrt.calls[y_sync[-1]][2] == "from_device"


def test_device_setup_follows_the_release(xrt, build):
    bd, designs = build
    path = bd / "npu" / f"{MODEL}.xclbin"
    dev = npu.Device(path)
    dev.program(designs["gemv"][1], bd)
    kinds = [c[0] for c in xrt.calls]
    assert kinds[:4] == ["device", "xclbin", "register_xclbin", "hw_context"]
    assert xrt.calls[0] == ("device", 0) and xrt.calls[3] == ("hw_context", "uuid-1")
    assert ("kernel", "uuid-1", designs["gemv"][3]) in xrt.calls


def test_gemv_through_the_backend(xrt, build, rng):
    bd, designs = build
    _register(xrt, designs)
    t, art, *_ = designs["gemv"]
    dev = npu.Device(bd / "npu" / f"{MODEL}.xclbin")
    w = rng.standard_normal((t.N, t.K)).astype(np.float32)
    x = rng.standard_normal(t.K).astype(np.float32)
    lin = npu.W8A8Linear(dev, art, w, bd)
    y = lin(x)
    run = [c for c in xrt.calls if c[0] == "run"][-1]
    assert list(run[5]) == [lin.w.bo, lin.x.bo, lin.y.bo]                      # gemv: w, x, y
    assert y.view(np.uint32).tolist() == layout.w8a8_reference(x, w).view(np.uint32).tolist()


def test_a_failed_run_is_an_error(xrt, build, rng):
    bd, designs = build
    _register(xrt, designs)
    t, art, *_ = designs["gemm"]
    lin = npu.W8A8Linear(npu.Device(bd / "npu" / f"{MODEL}.xclbin"), art, np.ones((t.N, t.K), np.float32), bd)
    xrt.fail_next_run = True
    with pytest.raises(DeviceError, match="ended in state error"):
        lin(np.ones((t.M, t.K), np.float32))


def test_wrong_buffers_are_named(xrt, build):
    bd, designs = build
    dev = npu.Device(bd / "npu" / f"{MODEL}.xclbin")
    prog = dev.program(designs["gemm"][1], bd)
    rec = dev.record()
    rec.dispatch(prog, {"x": dev.buffer(16), "y": dev.buffer(16)})
    with pytest.raises(GemforgeError, match=r"takes buffers \['x', 'w', 'y'\]; missing \['w'\]"):
        rec.submit()


def test_an_uncompiled_design_is_refused(xrt, build):
    bd, designs = build
    art = designs["gemm"][1]
    art.extra["compiled"] = False
    with pytest.raises(DeviceError, match="is not compiled"):
        npu.Device(bd / "npu" / f"{MODEL}.xclbin").program(art, bd)


def test_missing_pyxrt_and_device_are_listed_together(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyxrt", None)             # `import pyxrt` raises ImportError
    monkeypatch.setattr(pin, "DEVICE_NODE", str(tmp_path / "no-accel0"))
    with pytest.raises(DeviceError) as e:
        npu.Device(tmp_path / "x.xclbin")
    msg = str(e.value)
    assert "pyxrt" in msg and "no-accel0 does not exist" in msg and e.value.exit_code == 4


def test_instruction_streams(tmp_path):
    words = np.array([0x06030100, 0x00000105, 0xDEADBEEF], np.uint32)
    (tmp_path / "i.bin").write_bytes(words.tobytes())
    (tmp_path / "i.txt").write_text("".join(f"{w:08x}\n" for w in words))
    assert npu.read_insts(tmp_path / "i.bin").tolist() == words.tolist()
    assert npu.read_insts(tmp_path / "i.txt").tolist() == words.tolist()
    (tmp_path / "bad.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(GemforgeError, match="not a stream of 32-bit instructions"):
        npu.read_insts(tmp_path / "bad.bin")
    with pytest.raises(GemforgeError, match="cannot read"):
        npu.read_insts(tmp_path / "absent.bin")


def test_doctor_lines_without_an_npu(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyxrt", None)
    monkeypatch.setattr(pin, "DEVICE_NODE", str(tmp_path / "no-accel0"))
    lines = {what: (ok, detail, fix) for ok, what, detail, fix in npu.npu_status()}
    assert lines["pyxrt"][0] is False and "amdxdna" in lines["pyxrt"][2]
    assert lines["NPU device"][0] is False and "no-accel0 missing" in lines["NPU device"][1]
    assert lines["npu toolchain pin"][0] is None and pin.MLIR_AIE_RELEASE in lines["npu toolchain pin"][1]


def test_check_designs_runs_every_compiled_design(xrt, build):
    bd, designs = build
    _register(xrt, designs)
    results = npu.check_designs(MODEL, bd)
    assert [(r[0], r[1], r[2], r[3]) for r in results] == sorted(
        (d[1].name, d[0].M * d[0].N, True, 0.0) for d in designs.values())


def test_npu_check_without_compiled_designs(capsys, tmp_path):
    from gemforge.runtime.cli import main
    mf.save(mf.Manifest(), tmp_path)
    assert main(["npu-check", "--model", "270m", "--build-dir", str(tmp_path)]) == 1
    assert "no compiled NPU designs for gemma3-270m" in capsys.readouterr().err
