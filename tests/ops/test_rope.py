"""rope (NEOX, in place) against the numpy reference: small and large positions, D = 128 and 256.

The reference takes the fp32 angle pos * inv_freq (as transformers does) and float64 sin/cos, so
the tolerance (the spec's, relative to max(1, max |ref|)) measures the kernel's range reduction
and polynomials. At positions near 120000 an unreduced fp32 sin/cos is off by ~1e-2: the large
positions fail loudly if the reduction breaks. Rows past T (bucket padding) must stay untouched.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from gemforge.gen.spec import load_spec
from gemforge.runtime import paths
from gemforge.runtime import reference as ref
from gemforge.runtime.errors import GemforgeError
from tests.conftest import SENTINEL, assert_close

TOL = load_spec(paths.configs_dir() / "ops" / "rope.yaml").tolerance["f32"]


def run_rope(device, kernels, x, pos0, base, scale, pad_rows=0):
    T, H, D = x.shape
    buf = np.concatenate([x, np.full((pad_rows, H, D), SENTINEL, np.float32)])
    bx = device.upload(buf)
    ctrl = device.buffer(64, "ctrl", host=True)
    ctrl.write(np.array([pos0], np.uint32))
    rec = device.record()
    kernels.rope(rec, bx, ctrl, T, H, D, base, scale)
    rec.submit()
    out = bx.read().reshape(T + pad_rows, H, D)
    assert np.all(out[T:] == SENTINEL), "rope wrote past row T"
    return out[:T]


@pytest.mark.parametrize("D,pos0,base,scale", [
    (256, 0, 1e4, 1.0),          # local layer, first chunk (position 0: the identity)
    (128, 0, 1e6, 8.0),
    (256, 30000, 1e6, 8.0),      # global layer of the 4B..27B: linear scaling x8
    (128, 30000, 1e4, 1.0),
    (256, 120000, 1e4, 1.0),     # angles up to 1.2e5 rad
    (128, 131000, 1e6, 1.0),
])
def test_rope(device, kernels, rng, D, pos0, base, scale):
    x = (rng.standard_normal((5, 3, D)) * 4).astype(np.float32)
    got = run_rope(device, kernels, x, pos0, base, scale, pad_rows=2)
    assert_close(got, ref.rope_neox(x, pos0, base, scale), TOL, f"rope D={D} pos0={pos0} base={base:g} x{scale}")


def test_rope_one_row_many_heads(device, kernels, rng):
    """Decode shape: T = 1, the 27B's 32 query heads of 128."""
    x = rng.standard_normal((1, 32, 128)).astype(np.float32)
    got = run_rope(device, kernels, x, 77777, 1e6, 8.0, pad_rows=1)
    assert_close(got, ref.rope_neox(x, 77777, 1e6, 8.0), TOL, "rope decode")


def test_reference_is_a_complex_rotation_of_the_halves(rng):
    """An independent writing: (x[i] + j x[i + D/2]) * exp(j pos inv_freq[i]) (transformers' rotate_half)."""
    x = rng.standard_normal((6, 2, 256)).astype(np.float32)
    pos = np.arange(40, 46)
    z = (x[..., :128] + 1j * x[..., 128:].astype(np.float64)) * np.exp(1j * ref.rope_angles(pos, 256, 1e6, 8.0))[:, None]
    assert_close(ref.rope_neox(x, pos, 1e6, 8.0), np.concatenate([z.real, z.imag], -1), 1e-6, "reference vs rotation")
    assert_close(ref.rope_neox(x, 40, 1e6, 8.0), ref.rope_neox(x, pos, 1e6, 8.0), 0, "pos0 vs positions")


def test_reference_inv_freq_is_the_transformers_formula():
    inv = ref.rope_inv_freq(256, 1e4, 1.0)
    assert inv.dtype == np.float32 and inv.shape == (128,)
    # transformers: 1.0 / base ** (arange(0, D, 2).float() / D), every step rounded to fp32
    assert inv[0] == 1.0 and inv[1] == np.float32(1) / np.float32(1e4 ** np.float32(2 / 256))
    assert np.all(ref.rope_inv_freq(128, 1e6, 8.0) == ref.rope_inv_freq(128, 1e6, 1.0) / np.float32(8))
    # the angle at a large position is one fp32 product: it differs from the exact product
    ang = ref.rope_angles([120000], 256, 1e4)[0, 1]
    assert ang == np.float32(np.float32(120000) * inv[1]) and abs(float(ang) - 120000 * float(inv[1])) < 1e-2
    assert math.isclose(float(ref.rope_neox(np.ones((1, 1, 2), np.float32), 1, 1e4)[0, 0, 0]),
                        math.cos(1) - math.sin(1), rel_tol=1e-6)


def test_rope_rejects_an_odd_head_dim(device, kernels):
    b = device.buffer(4 * 3 * 5)
    with pytest.raises(GemforgeError, match="head dim 5 must be even"):
        kernels.rope(device.record(), b, b, 1, 3, 5, 1e4, 1.0)
