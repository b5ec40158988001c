"""`gemforge plan`: per-op tile usage, bytes, operations and roofline time from Phoenix's published limits."""
from __future__ import annotations

import json

import pytest

from gemforge.gen.npu.limits import PHOENIX
from gemforge.gen.npu.plan import make_plan
from gemforge.gen.spec import load_specs
from gemforge.runtime import paths
from gemforge.runtime.cli import main
from gemforge.runtime.config import model_config
from gemforge.runtime.placement import load_placement


@pytest.fixture(scope="module")
def plan27():
    return make_plan(load_placement("phoenix"), model_config("27b"), load_specs(paths.configs_dir() / "ops"), "q8_0", 4096)


def test_decode_rows_follow_the_roofline(plan27):
    cfg = model_config("27b")
    row = next(r for r in plan27.decode if r.op == "matvec gate_up")
    N, K, k = 2 * cfg.ffn, cfg.hidden, 256
    assert row.target == "npu" and row.calls == cfg.layers
    assert row.bytes == cfg.layers * (N * (K + k) + (K + k) + N * 4)
    assert row.ops == cfg.layers * 2 * N * K
    assert row.seconds == pytest.approx(row.bytes / PHOENIX.dram_bytes_per_s) and row.bound == "memory"
    assert row.tiles.startswith("16 cores, ") and row.design == "gemv_w8a8_f32_k5376_n43008_t64x256"
    head = next(r for r in plan27.decode if r.op == "matvec lm_head")
    assert head.calls == 1 and head.bytes == cfg.vocab * (K + k) + (K + k) + cfg.vocab * 4


def test_prefill_is_compute_bound_at_10_tops(plan27):
    row = next(r for r in plan27.prefill if r.op == "matmul gate_up")
    assert row.bound == "compute" and row.seconds == pytest.approx(row.ops / PHOENIX.int8_ops_per_s)


def test_totals_and_projection(plan27):
    d = plan27.to_json()
    assert d["decode_tok_s"] == pytest.approx(1 / sum(r.seconds for r in plan27.decode))
    assert 1.0 < d["decode_tok_s"] < 5.0          # 27B at ~27 GB/token over 89.6 GB/s
    assert d["prefill_tok_s"] == pytest.approx(256 / sum(r.seconds for r in plan27.prefill))
    others = {r.op for r in plan27.decode if r.target == "vulkan"}
    assert {"attention", "rmsnorm", "quantize (for the npu)"} <= others


def test_the_vulkan_placement_has_no_npu_rows():
    p = make_plan(load_placement("vulkan"), model_config("270m"), load_specs(paths.configs_dir() / "ops"))
    assert all(r.target == "vulkan" for r in p.decode + p.prefill)
    assert not any("quantize" in r.op for r in p.decode) and not any("W8A8" in a for a in p.assumptions)


def test_the_command(capsys):
    assert main(["plan", "--placement", "phoenix", "--model", "27b", "--weights", "q8_0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan: gemma3-27b on Phoenix, placement phoenix, --weights q8_0, context 4096")
    assert "tok/s projected" in out and "10 TOPS int8" in out and "89.6 GB/s" in out and "nothing here was measured" in out
    assert "matvec gate_up             npu       62" in out
    assert main(["plan", "--model", "270m", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] == "gemma3-270m" and d["decode_tok_s"] > 0


def test_bad_arguments(capsys):
    assert main(["plan", "--model", "3b"]) == 2
    assert "unknown model '3b'" in capsys.readouterr().err
    assert main(["plan", "--placement", "tpu"]) == 2
