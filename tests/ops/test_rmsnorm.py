import numpy as np
import pytest

from gemforge.runtime import reference as ref
from tests.conftest import assert_close

TOL = 1e-5


# L = 1 and 7: most threads hold nothing; 5376: the longest row kept in registers (max_L);
# 6001: longer than the registers hold (elements read again from memory). slices: workgroups per
# row (None: the runtime's choice, Kernels.norm_slices -- one on a software device); forced
# values split rows unevenly (1000 / 3, 6001 / 16) and past their length (7 / 16).
@pytest.mark.parametrize("rows,L,slices", [(1, 640, None), (7, 640, None), (4, 256, None), (3, 1000, None),
                                           (16, 5376, None), (2, 1, None), (5, 7, None), (2, 6001, None),
                                           (1, 5376, 16), (3, 1000, 3), (2, 6001, 16), (5, 7, 16), (70, 1500, 2)])
@pytest.mark.parametrize("mode", ["plain", "add", "add_norm"])
def test_rmsnorm(device, kernels, rng, rows, L, slices, mode, monkeypatch):
    if slices is not None:
        monkeypatch.setattr(kernels, "norm_slices", lambda rows, L: slices)
    x = (rng.standard_normal((rows, L)) * 300).astype(np.float32)   # the residual stream grows large
    w = (1 + rng.standard_normal(L) * 0.1).astype(np.float32)
    r = rng.standard_normal((rows, L)).astype(np.float32) * 1000
    w2 = (1 + rng.standard_normal(L) * 0.1).astype(np.float32)
    bx, bw, br, by = device.upload(x), device.upload(w), device.upload(r), device.buffer(x.nbytes)
    bw2, bz = device.upload(w2), device.buffer(x.nbytes)
    rec = device.record()
    fused = mode == "add_norm"
    kernels.rmsnorm(rec, bx, bw, by, rows, L, 1e-6, residual=br if mode != "plain" else None,
                    w2=bw2 if fused else None, z=bz if fused else None)
    rec.submit()
    want = ref.rmsnorm(x, w) + (r if mode != "plain" else 0)
    assert_close(by.read().reshape(rows, L), want, TOL, f"rmsnorm {mode} {rows}x{L}")
    if fused:
        assert_close(bz.read().reshape(rows, L), ref.rmsnorm(want, w2), TOL, f"rmsnorm add_norm z {rows}x{L}")


# 640: the registers hold the row; 1001: not a multiple of 8 (padded rows); 6001: past the registers
# (the rest is read again, and shuffled in the same trip count everywhere)
@pytest.mark.parametrize("rows,L", [(3, 640), (5, 1001), (2, 6001), (1, 7)])
def test_rmsnorm_add_norm_fp16_z(device, kernels, rng, rows, L):
    """z16: add_norm's z in fp16 rows of round_up(L, 8), zeros past L -- bit for bit the fp32 z rounded
    to nearest even (to_f16's layout and rounding); y as with the fp32 z; nothing past the last row."""
    x = (rng.standard_normal((rows, L)) * 300).astype(np.float32)
    w, w2 = ((1 + rng.standard_normal(L) * 0.1).astype(np.float32) for _ in range(2))
    r = rng.standard_normal((rows, L)).astype(np.float32) * 1000
    bx, bw, bw2, br = (device.upload(a) for a in (x, w, w2, r))
    ldz = -(-L // 8) * 8
    y32, z32, y16 = (device.buffer(x.nbytes) for _ in range(3))
    z16 = device.upload(np.full((rows + 1) * ldz, 0x7E01, np.uint16))
    rec = device.record()
    kernels.rmsnorm(rec, bx, bw, y32, rows, L, 1e-6, residual=br, w2=bw2, z=z32)
    kernels.rmsnorm(rec, bx, bw, y16, rows, L, 1e-6, residual=br, w2=bw2, z=z16, z16=True)
    rec.submit()
    np.testing.assert_array_equal(y16.read(), y32.read())
    got = z16.read(np.uint16, (rows + 1) * ldz)
    assert np.all(got[rows * ldz:] == 0x7E01), "z16 written past the last row"
    want = np.zeros((rows, ldz), np.uint16)
    want[:, :L] = z32.read(np.float32, rows * L).reshape(rows, L).astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got[:rows * ldz].reshape(rows, ldz), want)
