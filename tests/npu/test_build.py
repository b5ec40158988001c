"""`gemforge kernels --target npu`: render + check always, compile only where aiecc and Peano are found (one
line saying what is missing otherwise), the manifest merged with the Vulkan build's, and the pinned
release's compiler command lines (run against recording stand-ins for aiecc.py and clang++)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from gemforge.gen import manifest as mf
from gemforge.gen.npu import pin
from gemforge.gen.npu.build import build_npu
from gemforge.runtime import paths
from gemforge.runtime.cli import main
from gemforge.runtime.errors import SpecError

OPS = {"matvec"}      # 25 designs: enough for the driver, fast


@pytest.fixture
def no_toolchain(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(p) / "aiecc.py").exists()))
    monkeypatch.delenv("MLIR_AIE_INSTALL_DIR", raising=False)
    monkeypatch.delenv("PEANO_INSTALL_DIR", raising=False)


def _vulkan_artifact() -> mf.Artifact:
    return mf.Artifact(name="rmsnorm_plain", op="rmsnorm", target="vulkan", file="spirv/rmsnorm_plain.spv",
                       source="src/rmsnorm_plain.comp", values={}, axes={"mode": "plain"}, bindings=[],
                       push_constants=[], push_size=0, workgroup_size=[128, 1, 1], hash="v")


def test_without_the_toolchain_everything_is_rendered_checked_and_said(no_toolchain, tmp_path, capsys):
    bd = tmp_path / "build"
    mf.save(mf.Manifest(compiler="glslc x", artifacts={"rmsnorm_plain": _vulkan_artifact()}), bd)
    rc = main(["kernels", "--target", "npu", "--op", "matvec", "--build-dir", str(bd)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 0
    assert len(err) == 1 and "25 designs rendered and resource-checked" in err[0] and "NOT compiled" in err[0]
    assert pin.INSTALL_MLIR_AIE in err[0] and pin.INSTALL_PEANO in err[0]
    m = mf.load(bd)
    assert m.compiler == "glslc x" and m.artifacts["rmsnorm_plain"].target == "vulkan"     # merged, not overwritten
    npu = [a for a in m.artifacts.values() if a.target == "npu"]
    assert len(npu) == 25 and not any(a.extra["compiled"] for a in npu)
    a = m.artifacts["gemv_w8a8_f32_k640_n1536_t48x160"]
    d = bd / "npu" / a.name
    assert (bd / a.file).is_file() and a.file == f"npu/{a.name}/{a.name}.mlir"
    assert (d / f"{a.name}.cc").read_text().startswith(f"//===- {a.name}.cc")
    assert pin.AIECC_FLAGS[0] in (d / "compile.sh").read_text()
    assert a.axes == {"M": 1, "K": 640, "N": 1536, "out": "f32"} and a.op == "matvec"
    assert {"model": "gemma3-270m", "op": "matvec", "matrix": "qkv", "rows": 1} in a.extra["uses"]


def test_the_vulkan_build_keeps_npu_artifacts(no_toolchain, tmp_path):
    from gemforge.gen.build import _compile_all
    bd = tmp_path / "build"
    build_npu(bd, ops=OPS, log=lambda s: None)
    old = mf.load(bd)
    m, _ = _compile_all([], bd, old, "glslc x", [], 1, None, None)
    assert sum(a.target == "npu" for a in m.artifacts.values()) == 25


def test_a_design_that_does_not_fit_is_rejected_before_compiling(no_toolchain, tmp_path, capsys):
    cfg = tmp_path / "configs"
    shutil.copytree(paths.configs_dir(), cfg, ignore=shutil.ignore_patterns("__pycache__"))
    spec = cfg / "ops" / "matvec.yaml"
    spec.write_text(spec.read_text().replace("params: {tile_n: 64, tile_k: 256,", "params: {tile_n: 64, tile_k: 1024,"))
    rc = main(["kernels", "--target", "npu", "--op", "matvec", "--configs", str(cfg), "--build-dir", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "NPU design(s) do not fit Phoenix" in err and "data memory needs" in err and "limit 65536 bytes" in err
    assert not (tmp_path / "b" / "npu").exists()


@pytest.mark.parametrize("edit, message", [
    ("design: gemv", "field 'npu.design': must be one of gemm, gemv, got 'gemx'"),
    ("  params: {tile_n: 64,", "field 'npu.params.tile_x': unknown parameter"),
    ("    lm_head: [hidden, vocab]", "field 'npu.matrices.lm_head': K = 'hiden' names hiden, not a model field"),
    ("out: f32}", "field 'npu.params.out': must be one of f32, bf16, got 'f16'"),
    ("  design: gemv\n", "field 'npu.buckets': a gemv design has one row"),
])
def test_npu_section_errors_name_file_op_and_field(tmp_path, edit, message):
    from gemforge.gen.npu.build import plan
    cfg = tmp_path / "configs"
    shutil.copytree(paths.configs_dir(), cfg, ignore=shutil.ignore_patterns("__pycache__"))
    spec = cfg / "ops" / "matvec.yaml"
    text = spec.read_text()
    bad = {"design: gemv": "design: gemx", "  params: {tile_n: 64,": "  params: {tile_x: 1, tile_n: 64,",
           "    lm_head: [hidden, vocab]": "    lm_head: [hiden, vocab]", "out: f32}": "out: f16}",
           "  design: gemv\n": "  design: gemv\n  buckets: [16]\n"}[edit]
    assert edit in text
    spec.write_text(text.replace(edit, bad, 1))
    with pytest.raises(SpecError) as e:
        plan(cfg, ops={"matvec"})
    assert f"{spec}: op 'matvec', {message}" in str(e.value)


def _fake_tool(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_toolchain(monkeypatch, tmp_path):
    """Stand-ins for aiecc.py and Peano's clang++ that log their command line and write their outputs."""
    log = tmp_path / "tools.log"
    mlir_aie, peano = tmp_path / "mlir_aie", tmp_path / "peano"
    (mlir_aie / "bin").mkdir(parents=True)
    (mlir_aie / "include" / "aie_api").mkdir(parents=True)
    (peano / "bin").mkdir(parents=True)
    record = f"""
        import json, os, sys
        with open({str(log)!r}, "a") as f:
            f.write(json.dumps([os.path.basename(sys.argv[0]), os.getcwd(), sys.argv[1:]]) + "\\n")
        """
    _fake_tool(peano / "bin" / "clang++", record + """
        out = sys.argv[sys.argv.index("-o") + 1]
        open(out, "w").write("elf")
        """)
    _fake_tool(mlir_aie / "bin" / "aiecc.py", record + """
        args = dict(a.split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
        inp = args.get("--xclbin-input")
        kernels = (json.load(open(inp))["kernels"] if inp else []) + [args["--xclbin-kernel-name"]]
        json.dump({"kernels": kernels}, open(args["--xclbin-name"], "w"))
        open(args["--npu-insts-name"], "wb").write(b"\\x01\\x00\\x00\\x00" * 4)
        """)
    monkeypatch.setenv("MLIR_AIE_INSTALL_DIR", str(mlir_aie))
    monkeypatch.setenv("PEANO_INSTALL_DIR", str(peano))
    return log, mlir_aie, peano


def test_with_the_toolchain_each_model_gets_one_xclbin(fake_toolchain, tmp_path):
    log, mlir_aie, peano = fake_toolchain
    cfg = tmp_path / "configs"                 # one model: 5 decode designs, one xclbin
    shutil.copytree(paths.configs_dir(), cfg, ignore=shutil.ignore_patterns("__pycache__"))
    for f in (cfg / "models").glob("*.yaml"):
        if f.stem != "gemma3-270m":
            f.unlink()
    bd = tmp_path / "build"
    lines = []
    m = build_npu(bd, configs_dir=cfg, ops=OPS, log=lines.append)
    runs = [json.loads(ln) for ln in log.read_text().splitlines()]
    arts = sorted((a for a in m.artifacts.values() if a.target == "npu"), key=lambda a: a.name)
    assert len(arts) == 5 and all(a.extra["compiled"] for a in arts)      # qkv, o, gate_up, down, lm_head
    xclbin = json.loads((bd / "npu" / "gemma3-270m.xclbin").read_text())
    assert xclbin["kernels"] == [a.extra["xclbins"]["gemma3-270m"]["kernel"] for a in arts]
    assert [a.extra["xclbins"]["gemma3-270m"]["id"] for a in arts] == [hex(0x901 + i) for i in range(5)]
    aiecc = [r for r in runs if r[0] == "aiecc.py"]
    assert [Path(r[1]).name for r in aiecc] == [a.name for a in arts]    # each in its design's folder
    first = aiecc[0][2]
    assert first[:len(pin.AIECC_FLAGS)] == list(pin.AIECC_FLAGS)
    assert first[len(pin.AIECC_FLAGS):len(pin.AIECC_FLAGS) + 2] == ["--peano", str(peano)]
    assert first[-1] == f"{arts[0].name}.mlir" and not any(a.startswith("--xclbin-input") for a in first)
    assert all(any(a.startswith("--xclbin-input") for a in r[2]) for r in aiecc[1:])    # chained into one xclbin
    clang = [r for r in runs if r[0] == "clang++"]
    assert len(clang) == 5 and clang[0][2][:len(pin.PEANO_FLAGS)] == list(pin.PEANO_FLAGS)
    assert clang[0][2][len(pin.PEANO_FLAGS):len(pin.PEANO_FLAGS) + 2] == ["-I", str(mlir_aie / "include")]
    a = arts[0]
    assert (bd / a.extra["insts"]).read_bytes() == b"\x01\x00\x00\x00" * 4
    assert a.file == "npu/gemma3-270m.xclbin" and "compiled into 1 xclbin(s)" in lines[-1]
    # incremental: nothing changed, nothing recompiled
    build_npu(bd, configs_dir=cfg, ops=OPS, log=lambda s: None)
    assert len(log.read_text().splitlines()) == len(runs)
