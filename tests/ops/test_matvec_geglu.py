"""linear(..., act='geglu'): the decode GeGLU folded into the down projection's matvec, every format.

x holds [2K], gate columns then up columns (what the geglu kernel reads); the reference is
ref.linear(ref.geglu(x), w) with the exact weights the device holds. K not a multiple of 4 (up
then starts off a vec4) nor of a 16-byte chunk, K smaller than one chunk, and a weight in row
parts. Output columns outside the weight are pre-filled with a sentinel that must survive.
"""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.spec import load_spec
from gemforge.runtime import formats, paths
from gemforge.runtime import reference as ref
from gemforge.runtime.errors import GemforgeError
from gemforge.runtime.kernels import row_words, upload_weight
from tests.conftest import SENTINEL, assert_close, dispatch_names

FORMATS = formats.FORMATS
TOL = load_spec(paths.configs_dir() / "ops" / "matvec.yaml").tolerance


def make(rng, N, K):
    """gate/up as the gate_up projection leaves them (a few large gates: tanh must not overflow)."""
    gate = rng.uniform(-6, 6, K).astype(np.float32)
    gate[rng.integers(0, K, max(1, K // 50))] = rng.choice([-90.0, 90.0], max(1, K // 50))
    up = rng.uniform(-50, 50, K).astype(np.float32)
    w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    return np.concatenate([gate, up])[None], w


def run(device, kernels, W, gu):
    N = W.N
    bx = device.upload(gu)
    by = device.upload(np.full(N + 3, SENTINEL, np.float32))
    names = dispatch_names(device, lambda rec: kernels.linear(rec, W, bx, by, 1, act="geglu"))
    y = by.read(np.float32, N + 3)
    assert np.all(y[N:] == SENTINEL), "linear act=geglu wrote past its N outputs"
    return y[None, :N], names


def want(gu, w, fmt):
    return ref.linear(ref.geglu(gu), formats.quantize_roundtrip(w, fmt))


@pytest.mark.parametrize("N,K", [(77, 1000), (640, 2048), (3, 1001), (131, 37), (5, 5), (9, 5376)])
@pytest.mark.parametrize("fmt", FORMATS)
def test_geglu_matvec(device, kernels, rng, fmt, N, K):
    """K = 1000: not a multiple of 32; 1001, 37, 5: up off a vec4 boundary; 2048: the 270M down projection."""
    gu, w = make(rng, N, K)
    W = upload_weight(device, w, fmt, "w_down")
    y, names = run(device, kernels, W, gu)
    assert names == [f"matvec_{fmt}_geglu"]
    assert_close(y, want(gu, w, fmt), TOL[fmt], f"linear act=geglu {fmt} {N}x{K}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_geglu_matvec_split_weight(device, kernels, rng, fmt):
    """A weight in row parts: each part computes the GeGLU itself and writes its own columns of y."""
    N, K = 1001, 166
    gu, w = make(rng, N, K)
    qw, sw = row_words(fmt, K)
    W = upload_weight(device, w, fmt, "w_down", max_part_bytes=4 * (qw + sw) * 300)
    assert len(W.parts) == 4 and W.parts[-1].rows != W.parts[0].rows
    y, names = run(device, kernels, W, gu)
    assert names == [f"matvec_{fmt}_geglu"] * 4
    assert_close(y, want(gu, w, fmt), TOL[fmt], f"split linear act=geglu {fmt}")


def test_geglu_matvec_equals_the_two_dispatches(device, kernels, rng):
    """The fused call against geglu, then linear: the same GeGLU expression, so nearly the same sums."""
    N, K, fmt = 640, 2048, "q8_0"
    gu, w = make(rng, N, K)
    W = upload_weight(device, w, fmt, "w_down")
    fused, _ = run(device, kernels, W, gu)
    bgu, act, y = device.upload(gu), device.buffer(4 * K), device.buffer(4 * N)
    rec = device.record()
    kernels.geglu(rec, bgu, act, 1, K)
    kernels.linear(rec, W, act, y, 1)
    rec.submit()
    rec.destroy()
    assert_close(fused, y.read(np.float32, N)[None], TOL[fmt], "fused vs geglu + linear")


@pytest.mark.parametrize("T,act,message", [
    (2, "geglu", r"linear 'w': act='geglu' is fused only into the decode matrix-vector product \(T = 1\), "
                 r"not T = 2 rows \(for T > 1 run k.geglu\(...\) first, then linear without act\)"),
    (1, "gelu", r"linear 'w': act='gelu' is not a known activation \(use act='geglu' or none\)"),
])
def test_bad_act_is_an_error(device, kernels, rng, T, act, message):
    W = upload_weight(device, rng.standard_normal((8, 64)).astype(np.float32), "q8_0", "w")
    bx, by = device.buffer(4 * T * 128), device.buffer(4 * T * 8)
    with pytest.raises(GemforgeError, match=message):
        kernels.linear(device.record(), W, bx, by, T, act=act)


def test_geglu_x_too_small_is_an_error(device, kernels, rng):
    """x must hold gate and up: [2K], not [K]."""
    W = upload_weight(device, rng.standard_normal((8, 64)).astype(np.float32), "f16", "w")
    x, y = device.buffer(4 * 64, "act"), device.buffer(4 * 8, "y")
    with pytest.raises(GemforgeError, match=r"linear 'w' x: buffer 'act' holds 256 bytes, 512 needed "
                                            r"\(x must hold \[128\] fp32 \(gate, then up\) for act='geglu'\)"):
        kernels.linear(device.record(), W, x, y, 1, act="geglu")
