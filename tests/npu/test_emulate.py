"""The arithmetic proof: the generated int8 schedule, emulated from its MLIR text (gen/npu/emulate.py: the
runtime sequence's DMAs, the ObjectFifos with their links and dimensionsToStream, every core's program and
numpy mirrors of the C++ kernels), equals numpy's int8 matrix product bit for bit (int32), and its W8A8
output equals the numpy W8A8 reference bit for bit (same fp32 rounding order)."""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.npu import emulate, layout
from gemforge.gen.npu.design import gemm_tiling, gemv_tiling
from gemforge.gen.npu.emulate import EmulationError

from .conftest import render

GEMM = [  # (M, K, N, tile_m, tile_k, tile_n, cols, rows, out): every kernel expansion and array shape
    (16, 256, 512, 64, 128, 256, 4, 4, "f32"),     # bucket 16: m = 4 (1 accumulator row)
    (32, 640, 640, 64, 128, 256, 4, 4, "f32"),     # m = 8, n = 40 (odd n / 8: 1 accumulator column), 5 K blocks
    (128, 256, 1024, 64, 128, 256, 4, 4, "f32"),   # two row blocks -> two tasks, ping-pong BD ids
    (64, 128, 512, 64, 64, 128, 2, 4, "f32"),      # 2 columns: one memtile distributes A to two core rows
    (64, 128, 256, 64, 128, 128, 1, 4, "f32"),     # 1 column: A distributed to four rows
    (16, 64, 2304, 16, 64, 32, 4, 4, "f32"),       # 72 tiles per column: split at the 64-repeat limit
    (32, 256, 768, 64, 128, 256, 4, 4, "bf16"),    # bf16 output, separate int32 accumulators
]
GEMV = [  # (K, N, tile_n, tile_k, out)
    (640, 1536, 64, 256, "f32"),       # 270M qkv shape: m = 48, k = 160
    (256, 512, 64, 128, "f32"),
    (64, 8320, 8, 64, "f32"),          # 65 groups per core: split at the 64-repeat limit
    (640, 640, 64, 256, "bf16"),
]


def _gemm(case):
    M, K, N, tm, tk, tn, cols, rows, out = case
    return gemm_tiling(M, K, N, tm, tk, tn, cols, rows, 2, out)


def _gemv(case):
    _, K, N, tn, tk, out = case
    return gemv_tiling(K, N, tn, tk, out=out)


def _args(t, x, w, out):
    xa, wa = layout.pack_activations(x, t), layout.pack_weight(w, t)
    return [xa, wa, out] if t.kind == "gemm" else [wa, xa, out]


def _data(t, rng):
    x = rng.standard_normal((t.M, t.K)).astype(np.float32) * 3
    w = rng.standard_normal((t.N, t.K)).astype(np.float32) * 0.05
    return x, w


@pytest.mark.parametrize("case", [c for c in GEMM + [("gemv",) + c for c in GEMV] if c[-1] == "f32"], ids=str)
def test_int32_accumulators_equal_numpy_int8_matmul(case, rng):
    """(The probe passes the accumulators through a 4-byte output: f32 designs.)"""
    t = _gemv(case) if case[0] == "gemv" else _gemm(case)
    x, w = _data(t, rng)
    got = np.full(t.M * t.N, -1, np.int32)
    emulate.emulate(render(t).mlir, t.kind, _args(t, x, w, got), probe=True)
    xq, _ = layout.quantize_rows(x)
    wq, _ = layout.quantize_rows(w)
    want = layout.int8_matmul(xq, wq)
    assert np.array_equal(got.reshape(t.M, t.N), want), f"{t.name}: {np.count_nonzero(got.reshape(want.shape) != want)} differ"


@pytest.mark.parametrize("case", GEMM + [("gemv",) + c for c in GEMV], ids=str)
def test_w8a8_output_equals_reference_bit_for_bit(case, rng):
    t = _gemv(case) if case[0] == "gemv" else _gemm(case)
    x, w = _data(t, rng)
    got = np.zeros(t.M * t.N, np.float32 if t.out == "f32" else np.uint16)
    emulate.emulate(render(t).mlir, t.kind, _args(t, x, w, got))
    want = layout.w8a8_reference(x if t.kind == "gemm" else x[0], w, t.out).reshape(-1)
    assert got.view(np.uint32 if t.out == "f32" else np.uint16).tolist() == \
        want.view(np.uint32 if t.out == "f32" else np.uint16).tolist()


def test_extreme_values_do_not_overflow_int32(rng):
    """Every product at +-127 * +-127 over the longest K a design here has: still exact."""
    t = gemm_tiling(16, 2048, 256, 64, 128, 256)
    x = np.where(rng.random((t.M, t.K)) < 0.5, -1.0, 1.0).astype(np.float32)
    w = np.ones((t.N, t.K), np.float32)
    got = np.zeros(t.M * t.N, np.int32)
    emulate.emulate(render(t).mlir, "gemm", _args(t, x, w, got), probe=True)
    assert np.array_equal(got.reshape(t.M, t.N), layout.int8_matmul(layout.quantize_rows(x)[0],
                                                                     layout.quantize_rows(w)[0]))


# The emulation must be able to fail: a design with a wrong access pattern is caught.
MUTATIONS = {
    "memtile tiling stride": ("<size = 4, stride = 128>, <size = 8, stride = 1>], {%tile_0_2",
                              "<size = 4, stride = 136>, <size = 8, stride = 1>], {%tile_0_2"),
    "B sent to the wrong column": ("{id = 2 : i64, metadata = @B_L3L2_1}", "{id = 2 : i64, metadata = @B_L3L2_2}"),
    "too few A repeats": ("%arg0[0, 0, 0, 6144][2, 3, 16, 128]", "%arg0[0, 0, 0, 6144][1, 3, 16, 128]"),
    "A rows from the wrong offset": ("%arg0[0, 0, 0, 6144]", "%arg0[0, 0, 0, 12288]"),
    "output tile un-tiled wrongly": ("[<size = 4, stride = 256>, <size = 4, stride = 8>, <size = 8, stride = 32>",
                                     "[<size = 4, stride = 256>, <size = 4, stride = 32>, <size = 8, stride = 8>"),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_a_broken_design_is_caught(name, rng):
    t = gemm_tiling(64, 256, 512, 64, 128, 256)
    text = render(t).mlir
    old, new = MUTATIONS[name]
    assert old in text, "the mutation no longer applies: update it"
    x, w = _data(t, rng)
    got = np.zeros(t.M * t.N, np.float32)
    try:
        emulate.emulate(text.replace(old, new, 1), "gemm", _args(t, x, w, got))
    except EmulationError:
        return
    assert not np.array_equal(got, layout.w8a8_reference(x, w).reshape(-1))
