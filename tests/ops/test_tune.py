"""`gemforge tune` on this machine's device: a real sweep of matvec's tuning space over the 270M's small
products (each candidate checked against numpy, then timed), written as a size-class tuning file."""
from __future__ import annotations

import shutil

import pytest
import yaml

from gemforge.runtime.cli import main


def test_tune_small_class_writes_the_small_file_with_siblings(device, tmp_path, monkeypatch, capsys):
    if shutil.which("glslc") is None:
        pytest.skip("no glslc here to build the tuning candidates")
    from gemforge.gen.build import build
    bd = tmp_path / "build"
    # the candidates of 32 threads per workgroup (about 40, row groups included): enough for a sweep
    build(bd, ops={"matvec"}, tune_ops={"matvec": [{"format": "q8_0", "input": "plain", "out": "plain", "wg_size": "32"}]},
          log=lambda s: None)
    monkeypatch.setenv("GEMFORGE_BUILD_DIR", str(bd))
    out = tmp_path / "tuning.yaml"
    # a param the sweep does not vary, set by hand in the file (as the H200's split-K cost model values are)
    out.write_text("# where these numbers come from\n# (kept by every rewrite)\n"
                   "entries: {matvec: {matvec_q8_0: {norm_max_k: 2048, wg_size: 256}}}\n")
    rc = main(["tune", "--op", "matvec", "--model", "270m", "--weights", "q8_0", "--size-class", "small",
               "--reps", "2", "--redo", "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "4 shapes from 270m (size class small)" in err    # qkv, o, gate_up, down; not the 262144-row head
    text = out.read_text()
    assert text.startswith("# where these numbers come from\n# (kept by every rewrite)\n")
    doc = yaml.safe_load(text)
    entries = doc["entries"]["matvec"]
    assert entries["matvec_q8_0"] == entries["matvec_q8_0_geglu"]        # the geglu sibling takes the same values
    # the sweep's own choices replace the old ones (wg_size 32: every candidate had it); the hand-set value stays
    assert set(entries["matvec_q8_0"]) == {"wg_size", "rows_per_wg", "unroll", "row_groups", "norm_max_k"}
    assert entries["matvec_q8_0"]["wg_size"] == 32 and entries["matvec_q8_0"]["norm_max_k"] == 2048
    m = doc["measured"]["matvec_q8_0"]
    assert m["candidates"] > 1 and m["best_ms_per_token"] <= m["default_ms_per_token"]
    assert doc["device"] == device.info.name


def test_tune_refuses_an_op_the_device_cannot_run(device, capsys):
    if "cooperative_matrix" in device.info.features:
        pytest.skip(f"{device.info.name} runs the cooperative-matrix matmul")
    assert main(["tune", "--op", "matmul_coop", "--model", "270m", "--weights", "q8_0"]) != 0
    err = capsys.readouterr().err
    assert "--op matmul_coop: portable matmul (" in err and "lacks cooperative_matrix" in err


def test_tune_matvec_dot(device, tmp_path, monkeypatch):
    """The integer-dot product's sweep: its candidates run on int8 x (decode_dot 'int8'), its out-geglu
    sibling takes the winner's values."""
    if shutil.which("glslc") is None:
        pytest.skip("no glslc here to build the tuning candidates")
    if "int_dot" not in device.info.features:
        pytest.skip(f"{device.info.name} has no integer dot product (VK_KHR_shader_integer_dot_product)")
    from gemforge.gen.build import build
    bd = tmp_path / "build"
    build(bd, ops={"matvec", "matvec_dot"},
          tune_ops={"matvec_dot": [{"format": "q4_0", "out": "plain", "wg_size": "32", "rows_per_wg": "4"}]},
          log=lambda s: None)
    monkeypatch.setenv("GEMFORGE_BUILD_DIR", str(bd))
    out = tmp_path / "tuning.yaml"
    rc = main(["tune", "--op", "matvec_dot", "--model", "270m", "--weights", "q4_0", "--size-class", "small",
               "--reps", "2", "--out", str(out)])
    assert rc == 0
    doc = yaml.safe_load(out.read_text())
    entries = doc["entries"]["matvec_dot"]
    assert entries["matvec_dot_q4_0"] == entries["matvec_dot_q4_0_to_geglu"]
    m = doc["measured"]["matvec_dot_q4_0"]
    assert entries["matvec_dot_q4_0"] == m["params"] and m["candidates"] == 13     # the default and 12 candidates
    assert m["best_ms_per_token"] <= m["default_ms_per_token"]

