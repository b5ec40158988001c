"""The AIE C++ kernels (templates/aie/*.cc.j2), compiled for the host with g++ against a stand-in for the
AIE API (tests/npu/aie_api_host), must compute exactly what their numpy mirrors (gen/npu/kernels.py, used by
the emulator) compute: the same layouts, loops, int32 accumulation and fp32 requantization.  This checks
the kernels' own logic; it says nothing about the real AIE API or the Peano compiler (not installable here)."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from gemforge.gen.npu import kernels as K
from gemforge.gen.npu.design import gemm_tiling, gemv_tiling

from .conftest import render

SHIM = Path(__file__).parent / "aie_api_host"
CASES = {
    "gemm 4x2 accumulators": gemm_tiling(64, 256, 512, 64, 128, 256),          # m 16, n 64
    "gemm 1x1 accumulators": gemm_tiling(16, 640, 640, 64, 128, 256),          # m 4, n 40
    "gemm bf16 2x2": gemm_tiling(32, 256, 768, 64, 64, 256, out="bf16"),      # m 8, n 64
    "gemv f32": gemv_tiling(640, 1536, 64, 256),                               # m 48, k 160
    "gemv bf16": gemv_tiling(256, 512, 64, 128, out="bf16"),
}
P8, P32 = ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_int32)


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    gxx = shutil.which("g++")
    if not gxx:
        pytest.skip("no g++ on this machine")
    out = tmp_path_factory.mktemp("kernels")

    def build(item):
        name, t = item
        src = out / f"{t.name}.cc"
        src.write_text(render(t).kernel)
        so = out / f"{t.name}.so"
        p = subprocess.run([gxx, "-std=c++20", "-O1", "-shared", "-fPIC", "-fno-fast-math", "-ffp-contract=off",
                            "-I", str(SHIM), str(src), "-o", str(so)], capture_output=True, text=True)
        assert p.returncode == 0, f"{name}: g++ failed:\n{p.stderr[:3000]}"
        return name, ctypes.CDLL(str(so))

    with ThreadPoolExecutor() as pool:
        return dict(pool.map(build, CASES.items()))


def ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def _scale_block(rows: int, k: int, per: int, rng) -> np.ndarray:
    """A tiled scale block: random bytes, with a positive f32 scale at every row's first 4 bytes."""
    blk = rng.integers(-128, 128, rows * k, dtype=np.int8)
    scales = rng.uniform(0.001, 0.1, rows).astype(np.float32)
    for i, s in enumerate(scales):
        o = (i // per) * per * k + (i % per) * 8
        blk.view(np.uint8)[o:o + 4] = np.frombuffer(s.tobytes(), np.uint8)
    return blk


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("gemm")])
def test_gemm_kernels_match_their_mirrors(libs, case, rng):
    t, lib = CASES[case], libs[case]
    m, k, n = t.m, t.k, t.n
    a = rng.integers(-127, 128, (m, k), dtype=np.int8)
    b = rng.integers(-127, 128, (n, k), dtype=np.int8)
    acc_c = np.full(m * n, 7, np.int32)
    lib.zero_acc(ptr(acc_c))
    assert not acc_c.any()
    acc_py = np.zeros((m, n), np.int32)
    for _ in range(3):                                  # accumulate over three k blocks
        lib.matmul_i8_i32(ptr(a), ptr(b), ptr(acc_c))
        K.matmul_i8_i32(a, b, acc_py)
        a, b = rng.integers(-127, 128, (m, k), dtype=np.int8), rng.integers(-127, 128, (n, k), dtype=np.int8)
    assert np.array_equal(acc_c, acc_py.reshape(-1))
    sa, sb = _scale_block(m, k, 4, rng), _scale_block(n, k, 8, rng)
    if t.out == "f32":
        out_c = acc_c.copy()
        lib.requant_f32(ptr(sa), ptr(sb), ptr(out_c))
        out_py = acc_py.copy().view(np.float32)
        K.requant_f32(sa.reshape(m, k), sb.reshape(n, k), out_py)
        assert out_c.tolist() == out_py.reshape(-1).view(np.int32).tolist()
    else:
        out_c = np.zeros(m * n, np.uint16)
        lib.requant_bf16(ptr(sa), ptr(sb), ptr(acc_c), ptr(out_c))
        out_py = np.zeros((m, n), np.uint16)
        K.requant_bf16(sa.reshape(m, k), sb.reshape(n, k), acc_py, out_py)
        assert out_c.tolist() == out_py.reshape(-1).tolist()


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("gemv")])
def test_gemv_kernels_match_their_mirrors(libs, case, rng):
    t, lib = CASES[case], libs[case]
    m, k, Kp = t.m, t.k, t.Kp
    x = rng.integers(-127, 128, Kp, dtype=np.int8)
    x.view(np.uint8)[t.K:t.K + 4] = np.frombuffer(np.float32(0.037).tobytes(), np.uint8)
    acc_c, acc_py = np.full(m, 3, np.int32), np.zeros(m, np.int32)
    lib.zero_acc(ptr(acc_c))
    for kb in range(t.K // k):
        w = rng.integers(-127, 128, (m, k), dtype=np.int8)
        lib.matvec_i8_i32(ptr(w), ptr(x), ptr(acc_c), ctypes.c_int32(kb))
        K.matvec_i8_i32(w, x, acc_py, kb)
    assert np.array_equal(acc_c, acc_py)
    ws = _scale_block(m, k, 8, rng)
    if t.out == "f32":
        out_c = acc_c.copy()
        lib.requant_f32(ptr(ws), ptr(x), ptr(out_c))
        out_py = acc_py.copy().view(np.float32)
        K.requant_f32_gemv(ws.reshape(m, k), x, out_py)
        assert out_c.tolist() == out_py.view(np.int32).tolist()
    else:
        out_c = np.zeros(m, np.uint16)
        lib.requant_bf16(ptr(ws), ptr(x), ptr(acc_c), ptr(out_c))
        out_py = np.zeros(m, np.uint16)
        K.requant_bf16_gemv(ws.reshape(m, k), x, acc_py, out_py)
        assert out_c.tolist() == out_py.tolist()
