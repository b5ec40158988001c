"""Kernels.linear_addnorm: the residual add + RMSNorm pair folded into the decode matrix-vector product.

h = r + rmsnorm(x) * nw must land in `h`, and y = W @ (rmsnorm(h) * nw2), every format, against
numpy with the exact weights the device holds. K not a multiple of 4 nor of a chunk, K at the
variant's limit (the 1B's 1152), a weight in row parts (each part's first workgroup writes h, the
same values), and a K past the limit refused. Output columns past N keep a sentinel.
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


def vectors(rng, K):
    x = (rng.standard_normal(K) * 30).astype(np.float32)             # a sub-block's output
    r = (rng.standard_normal(K) * 300).astype(np.float32)            # the residual stream grows large
    nw, nw2 = ((1 + rng.standard_normal(K) * 0.1).astype(np.float32) for _ in range(2))
    return x, r, nw, nw2


def run(device, kernels, W, x, r, nw, nw2):
    N, K = W.N, W.K
    bx, br, bw, bw2 = (device.upload(a) for a in (x, r, nw, nw2))
    bh = device.upload(np.full(K, SENTINEL, np.float32))
    by = device.upload(np.full(N + 3, SENTINEL, np.float32))
    names = dispatch_names(device, lambda rec: kernels.linear_addnorm(rec, W, bx, br, bw, bw2, bh, by, EPS))
    y = by.read(np.float32, N + 3)
    assert np.all(y[N:] == SENTINEL), "linear_addnorm wrote past its N outputs"
    return bh.read(np.float32, K), y[:N], names


def want(w, fmt, x, r, nw, nw2):
    h = r + ref.rmsnorm(x, nw, EPS)
    return h, ref.linear(ref.rmsnorm(h, nw2, EPS)[None], formats.quantize_roundtrip(w, fmt))[0]


@pytest.mark.parametrize("N,K", [(77, 1000), (2048, 640), (3, 37), (130, 1152)])
@pytest.mark.parametrize("fmt", FORMATS)
def test_addnorm_matvec(device, kernels, rng, fmt, N, K):
    """640: the 270M's hidden size; 1152: the 1B's (the variant's norm_max_k); 37, 1000: partial chunks."""
    x, r, nw, nw2 = vectors(rng, K)
    w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    W = upload_weight(device, w, fmt, "w")
    assert kernels.addnorm_fits(W)
    h, y, names = run(device, kernels, W, x, r, nw, nw2)
    assert names == [f"matvec_{fmt}_addnorm"]
    h_ref, y_ref = want(w, fmt, x, r, nw, nw2)
    assert_close(h, h_ref, 1e-6, f"addnorm h {fmt} K={K}")
    assert_close(y, y_ref, TOL[fmt], f"addnorm y {fmt} {N}x{K}")


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
def test_addnorm_matvec_split_weight(device, kernels, rng, fmt):
    N, K = 1001, 640
    x, r, nw, nw2 = vectors(rng, K)
    w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    qw, sw = row_words(fmt, K)
    W = upload_weight(device, w, fmt, "w", max_part_bytes=4 * (qw + sw) * 300)
    assert len(W.parts) == 4
    h, y, names = run(device, kernels, W, x, r, nw, nw2)
    assert names == [f"matvec_{fmt}_addnorm"] * 4
    h_ref, y_ref = want(w, fmt, x, r, nw, nw2)
    assert_close(h, h_ref, 1e-6, "split addnorm h")
    assert_close(y, y_ref, TOL[fmt], "split addnorm y")


def test_addnorm_matvec_equals_the_two_dispatches(device, kernels, rng):
    """Against rmsnorm add_norm, then linear: the same fp32 norm expressions, so nearly the same sums."""
    N, K, fmt = 640, 1152, "q8_0"
    x, r, nw, nw2 = vectors(rng, K)
    W = upload_weight(device, (rng.standard_normal((N, K)) * 0.05).astype(np.float32), fmt, "w")
    h, y, _ = run(device, kernels, W, x, r, nw, nw2)
    bx, br, bw, bw2 = (device.upload(a) for a in (x, r, nw, nw2))
    bh, bz, by = device.buffer(4 * K), device.buffer(4 * K), device.buffer(4 * N)
    rec = device.record()
    kernels.rmsnorm(rec, bx, bw, bh, 1, K, EPS, residual=br, w2=bw2, z=bz)
    kernels.linear(rec, W, bz, by, 1)
    rec.submit()
    assert_close(h, bh.read(np.float32, K), 1e-6, "h: fused vs rmsnorm add_norm")
    assert_close(y, by.read(np.float32, N), 1e-5, "y: fused vs rmsnorm add_norm + linear")


def test_addnorm_refuses_a_k_past_its_limit(device, kernels, rng):
    K = 1153
    W = upload_weight(device, (rng.standard_normal((8, K)) * 0.05).astype(np.float32), "q8_0", "w_big")
    assert not kernels.addnorm_fits(W)
    b = device.buffer(4 * K)
    with pytest.raises(GemforgeError, match=r"linear_addnorm 'w_big': K = 1153 exceeds the kernel's norm_max_k = 1152"):
        kernels.linear_addnorm(device.record(), W, b, b, b, b, b, b, EPS)
