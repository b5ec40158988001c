"""What the decode matrix-vector product computes after itself: matvec out add_norm and out geglu.

Kernels.linear_norm_after: y = W @ x, then (the dispatch's last workgroup, counted over every part's
workgroups) h = r + rmsnorm(y) * nw and z = rmsnorm(h) * nw2. Checked against numpy with the exact
weights the device holds, every format; N not a multiple of any workgroup's rows, N past what a thread
keeps in registers, a weight in row parts, the counter left at zero (the same recording submitted
twice, and two calls in one recording), an N past the kernel's limit refused.

Kernels.linear_geglu_after: y[f] = gelu_tanh(g_f) * u_f for [g; u] = W @ x (gate rows, then up rows,
one part). Every format, F not a multiple of the rows a group computes, and a weight in parts refused.
Buffers are one element longer than the call's outputs, holding a sentinel that must survive.
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
EPS = 1e-6


def norm_inputs(rng, N, K):
    x = rng.uniform(-2, 2, K).astype(np.float32)
    w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    r = (rng.standard_normal(N) * 300).astype(np.float32)           # the residual stream grows large
    nw, nw2 = ((1 + rng.standard_normal(N) * 0.1).astype(np.float32) for _ in range(2))
    return x, w, r, nw, nw2


def norm_want(x, w, fmt, r, nw, nw2):
    y = ref.linear(x[None], formats.quantize_roundtrip(w, fmt))[0]
    h = r + ref.rmsnorm(y, nw, EPS)
    return y, h, ref.rmsnorm(h, nw2, EPS)


def run_norm_after(device, kernels, W, x, r, nw, nw2, calls=1, submits=1):
    N = W.N
    bx, br, bw, bw2 = (device.upload(a) for a in (x, r, nw, nw2))
    by, bh, bz = (device.upload(np.full(N + 1, SENTINEL, np.float32)) for _ in range(3))
    def record(rec):
        for _ in range(calls):
            kernels.linear_norm_after(rec, W, bx, by, br, bw, bw2, bh, bz, EPS)
    names = dispatch_names(device, record, submits)
    out = [b.read(np.float32, N + 1) for b in (by, bh, bz)]
    for name, o in zip("yhz", out):
        assert o[N] == SENTINEL, f"linear_norm_after wrote {name} past its N outputs"
    return [o[:N] for o in out], names


@pytest.mark.parametrize("N,K", [(640, 2048), (77, 1000), (5376, 96), (1, 37)])
@pytest.mark.parametrize("fmt", FORMATS)
def test_norm_after(device, kernels, rng, fmt, N, K):
    """640 x 2048: the 270M's down projection; 5376: the 27B's hidden size (the variant's limit, more
    than a small workgroup keeps in registers); 77, 1: fewer outputs than one workgroup's rows."""
    x, w, r, nw, nw2 = norm_inputs(rng, N, K)
    W = upload_weight(device, w, fmt, "w")
    assert kernels.norm_after_fits(W)
    (y, h, z), names = run_norm_after(device, kernels, W, x, r, nw, nw2)
    assert names == [f"matvec_{fmt}_to_addnorm"]
    y_ref, h_ref, z_ref = norm_want(x, w, fmt, r, nw, nw2)
    assert_close(y, y_ref, TOL[fmt], f"norm_after y {fmt} {N}x{K}")
    assert_close(h, h_ref, 1e-5, f"norm_after h {fmt} {N}x{K}")
    assert_close(z, z_ref, 1e-4, f"norm_after z {fmt} {N}x{K}")


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
def test_norm_after_split_weight_and_counter_reuse(device, kernels, rng, fmt):
    """Four row parts (four dispatches, one count); the recording submitted twice with two calls in
    it: a counter not left at zero would make a workgroup other than the last one do the norms (or none)."""
    N, K = 1001, 640
    x, w, r, nw, nw2 = norm_inputs(rng, N, K)
    qw, sw = row_words(fmt, K)
    W = upload_weight(device, w, fmt, "w", max_part_bytes=4 * (qw + sw) * 300)
    assert len(W.parts) == 4
    (y, h, z), names = run_norm_after(device, kernels, W, x, r, nw, nw2, calls=2, submits=2)
    assert names == [f"matvec_{fmt}_to_addnorm"] * 8
    y_ref, h_ref, z_ref = norm_want(x, w, fmt, r, nw, nw2)
    assert_close(y, y_ref, TOL[fmt], "split norm_after y")
    assert_close(h, h_ref, 1e-5, "split norm_after h")
    assert_close(z, z_ref, 1e-4, "split norm_after z")


def test_norm_after_equals_the_two_dispatches(device, kernels, rng):
    """Against linear, then rmsnorm add_norm: the same fp32 norm expressions, so nearly the same sums."""
    N, K, fmt = 1152, 640, "q8_0"
    x, w, r, nw, nw2 = norm_inputs(rng, N, K)
    W = upload_weight(device, w, fmt, "w")
    (y, h, z), _ = run_norm_after(device, kernels, W, x, r, nw, nw2)
    bx, br, bw, bw2 = (device.upload(a) for a in (x, r, nw, nw2))
    by, bh, bz = (device.buffer(4 * N) for _ in range(3))
    rec = device.record()
    kernels.linear(rec, W, bx, by, 1)
    kernels.rmsnorm(rec, by, bw, bh, 1, N, EPS, residual=br, w2=bw2, z=bz)
    rec.submit()
    assert np.array_equal(y, by.read(np.float32, N)), "y: the same kernel body, the same sums"
    assert_close(h, bh.read(np.float32, N), 1e-6, "h: fused vs rmsnorm add_norm")
    assert_close(z, bz.read(np.float32, N), 1e-5, "z: fused vs rmsnorm add_norm")


def test_norm_after_refuses_an_n_past_its_limit(device, kernels, rng):
    N = 5377
    W = upload_weight(device, (rng.standard_normal((N, 8)) * 0.05).astype(np.float32), "q8_0", "w_tall")
    assert not kernels.norm_after_fits(W)
    b = device.buffer(4 * N)
    with pytest.raises(GemforgeError, match=r"linear_norm_after 'w_tall': N = 5377 exceeds the kernel's norm_max_n = 5376"):
        kernels.linear_norm_after(device.record(), W, b, b, b, b, b, b, b, EPS)


def run_geglu_after(device, kernels, W, x):
    F = W.N // 2
    bx = device.upload(x)
    by = device.upload(np.full(F + 1, SENTINEL, np.float32))
    names = dispatch_names(device, lambda rec: kernels.linear_geglu_after(rec, W, bx, by))
    y = by.read(np.float32, F + 1)
    assert y[F] == SENTINEL, "linear_geglu_after wrote past its F outputs"
    return y[:F], names


@pytest.mark.parametrize("F,K", [(2048, 640), (1, 37), (77, 1000), (203, 96)])
@pytest.mark.parametrize("fmt", FORMATS)
def test_geglu_after(device, kernels, rng, fmt, F, K):
    """2048 x 640: the 270M's gate/up; F = 1, 77, 203: fewer outputs than, or not a multiple of, the rows
    a workgroup computes (a group past F re-reads the last row and writes nothing)."""
    x = rng.uniform(-2, 2, K).astype(np.float32)
    w = (rng.standard_normal((2 * F, K)) * 0.1).astype(np.float32)
    w[rng.integers(0, F, max(1, F // 20))] *= 40        # a few large gates: tanh must not overflow
    W = upload_weight(device, w, fmt, "w_gate_up")
    assert kernels.geglu_after_fits(W)
    y, names = run_geglu_after(device, kernels, W, x)
    assert names == [f"matvec_{fmt}_to_geglu"]
    gu = ref.linear(x[None], formats.quantize_roundtrip(w, fmt))
    want = ref.geglu(gu)[0]
    # gelu's slope is at most ~1.13, so the product's relative error carries over, scaled by |up|
    assert_close(y, want, 20 * TOL[fmt], f"geglu_after {fmt} {F}x{K}")


def test_geglu_after_refuses_a_split_weight(device, kernels, rng):
    K = 64
    qw, sw = row_words("q8_0", K)
    W = upload_weight(device, (rng.standard_normal((40, K)) * 0.05).astype(np.float32), "q8_0", "w_gu",
                      max_part_bytes=4 * (qw + sw) * 16)
    assert len(W.parts) == 4 and not kernels.geglu_after_fits(W)
    b = device.buffer(4 * 40)
    with pytest.raises(GemforgeError, match=r"linear_geglu_after 'w_gu': needs an even N in one weight part"):
        kernels.linear_geglu_after(device.record(), W, b, b)
