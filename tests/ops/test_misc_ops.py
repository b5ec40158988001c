"""geglu, add, to_f16, argmax and topk against numpy.

geglu covers |x| up to 1e4 and beyond (a tanh written as (e^y - e^-y) / (e^y + e^-y) gives NaN there)
with the spec's tolerance relative to max(1, max |ref|); argmax and topk must match exactly, including
the lowest-index rule among equal values, across the workgroup chunks of a 262144-entry vocabulary.
to_f16 (the cooperative-matrix matmul's input) must equal numpy's round-to-nearest-even float16 bit for
bit, with each row's padding to a multiple of 8 values zero.
"""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.spec import load_spec
from gemforge.runtime import paths
from gemforge.runtime import reference as ref
from gemforge.runtime.errors import GemforgeError
from tests.conftest import SENTINEL, assert_close

SPECS = {op: load_spec(paths.configs_dir() / "ops" / f"{op}.yaml") for op in ("geglu", "add")}
VOCAB = 262144


def submit(device, fn):
    rec = device.record()
    fn(rec)
    rec.submit()


@pytest.mark.parametrize("T,F", [(1, 2048), (3, 1001)])
def test_geglu(device, kernels, rng, T, F):
    gu = rng.standard_normal((T, 2 * F)).astype(np.float32) * 3
    gate = gu[:, :F].reshape(-1)
    extremes = np.array([0.0, -0.0, 1e-4, -1e-4, 5, -5, 30, -30, 1e3, -1e3, 1e4, -1e4, 3e12, -3e12], np.float32)
    gate[:extremes.size] = extremes                # x^3 overflows fp32 for the last pair
    gu[:, :F] = gate.reshape(T, F)
    by = device.upload(np.full((T + 1) * F, SENTINEL, np.float32))
    submit(device, lambda rec: kernels.geglu(rec, device.upload(gu), by, T, F))
    got = by.read()
    assert np.all(got[T * F:] == SENTINEL), "geglu wrote past row T"
    want = ref.geglu(gu)
    # the large |x| products dwarf everything: check them, then the ordinary values at their own scale
    big = np.abs(gu[:, :F]) > 100
    assert_close(got[:T * F].reshape(T, F)[big], want[big], SPECS["geglu"].tolerance["f32"], "geglu |x| > 100")
    assert_close(got[:T * F].reshape(T, F)[~big], want[~big], SPECS["geglu"].tolerance["f32"], "geglu")


@pytest.mark.parametrize("T,F", [(1, 2048), (3, 1000)])
def test_geglu_f16_output(device, kernels, rng, T, F):
    """The fp16 output (the cooperative-matrix matmul's x for the down product) is the fp32 output
    rounded to nearest even, bit for bit (numpy's float16 rounding), overflow to inf included; rows
    past T are left alone."""
    gu = (rng.standard_normal((T, 2 * F)) * 3).astype(np.float32)
    gu[0, :4], gu[0, F:F + 4] = [2.0, -3.0, 1e3, 5.0], [1e3, 1e4, 1e3, 1e-9]    # ~1e7 overflows fp16
    bgu = device.upload(gu)
    b32 = device.buffer(4 * T * F)
    b16 = device.upload(np.full((T + 1) * F, 0x7E01, np.uint16))
    submit(device, lambda rec: (kernels.geglu(rec, bgu, b32, T, F), kernels.geglu(rec, bgu, b16, T, F, f16=True)))
    got = b16.read(np.uint16, (T + 1) * F)
    assert np.all(got[T * F:] == 0x7E01), "geglu (fp16) wrote past row T"
    with np.errstate(over="ignore"):
        want = b32.read(np.float32, T * F).astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(got[:T * F], want)
    with pytest.raises(GemforgeError, match="F % 8 == 0"):
        kernels.geglu(device.record(), bgu, b16, 1, 1001, f16=True)


def test_gelu_reference():
    x = np.array([-1e4, -3.0, -1.0, 0.0, 0.5, 1.0, 3.0, 1e4], np.float32)
    want = [0.0, -0.0036373, -0.1588080, 0.0, 0.3457140, 0.8411920, 2.9963627, 1e4]
    np.testing.assert_allclose(ref.gelu_tanh(x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("T,K", [(1, 8), (3, 1001), (5, 2), (256, 640)])
def test_to_f16(device, kernels, rng, T, K):
    x = (rng.standard_normal((T, K)) * 50).astype(np.float32)
    special = np.array([0.0, -0.0, 65504.0, 65520.0, 1e6, -1e6, 6e-8, 3e-8, 1e-9, 2049.0, 2051.0, 1.0 + 2.0 ** -11,
                        np.inf, -np.inf], np.float32)     # max, overflow, subnormals, ties to even, infinities
    flat = x.reshape(-1)
    flat[:min(special.size, flat.size)] = special[:flat.size]
    ldx = -(-K // 8) * 8
    by = device.upload(np.full(T * ldx + 8, 0x7E01, np.uint16))     # a NaN pattern: every slot must be written
    got_ldx = []
    submit(device, lambda rec: got_ldx.append(kernels.to_f16(rec, device.upload(x), by, T, K)))
    got = by.read(np.uint16, T * ldx + 8)
    assert got_ldx == [ldx]
    assert np.all(got[T * ldx:] == 0x7E01), "to_f16 wrote past its rows"
    rows = got[:T * ldx].reshape(T, ldx)
    np.testing.assert_array_equal(rows[:, :K], x.astype(np.float16).view(np.uint16))
    assert np.all(rows[:, K:] == 0), "the padding of each row must be zeros"


def test_to_f16_refuses_small_buffers(device, kernels):
    rec = device.record()
    with pytest.raises(GemforgeError, match=r"to_f16 y: .* 64 needed.*\[2, 16\] fp16"):
        kernels.to_f16(rec, device.upload(np.zeros(2 * 9, np.float32)), device.buffer(38), 2, 9)


@pytest.mark.parametrize("T,rows,splits", [(3, 64, 1), (5, 100, 8), (7, 96, 9), (2, 37, 13), (256, 44, 20)])
def test_split_sum(device, kernels, rng, T, rows, splits):
    """The splits summed in order, bit for bit as numpy's sequential fp32 sum, into columns row0 .. row0 +
    rows of a wider y (vec4 path where rows % 4 == 0, scalar otherwise; split counts across the loads
    issued together); every other element of y is left alone."""
    part = (rng.standard_normal((splits, T, rows)) * np.logspace(0, 6, splits)[:, None, None]).astype(np.float32)
    row0, ldy = 4, rows + 12
    by = device.upload(np.full((T + 1, ldy), SENTINEL, np.float32))
    submit(device, lambda rec: kernels.split_sum(rec, device.upload(part), by, T, rows, row0, ldy, splits))
    want = np.full((T + 1, ldy), SENTINEL, np.float32)
    acc = np.zeros((T, rows), np.float32)
    for s in range(splits):
        acc = acc + part[s]
    want[:T, row0:row0 + rows] = acc
    np.testing.assert_array_equal(by.read().reshape(T + 1, ldy), want)


def test_split_sum_refuses_bad_calls(device, kernels):
    rec = device.record()
    with pytest.raises(GemforgeError, match=r"split_sum part: .* 96 needed"):
        kernels.split_sum(rec, device.buffer(64), device.buffer(1024), 2, 4, 0, 4, 3)
    with pytest.raises(GemforgeError, match=r"row0 \+ rows <= ldy"):
        kernels.split_sum(rec, device.buffer(1024), device.buffer(1024), 2, 4, 2, 4, 3)


@pytest.mark.parametrize("n", [1, 1000, 70001])
def test_add(device, kernels, rng, n):
    a = (rng.standard_normal(n) * 1e4).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    by = device.upload(np.full(n + 4, SENTINEL, np.float32))
    submit(device, lambda rec: kernels.add(rec, device.upload(a), device.upload(b), by, n))
    got = by.read()
    assert np.all(got[n:] == SENTINEL), "add wrote past n"
    assert_close(got[:n], ref.add(a, b), SPECS["add"].tolerance["f32"], f"add n={n}")


def vocab_with_ties(rng, V, top=(5.0, 4.0, 4.0, 3.5)):
    """Random logits with equal maxima in different workgroup chunks (lowest index must win)."""
    x = rng.standard_normal(V).astype(np.float32)
    spots = [V - 1, 3 * V // 4, V // 2 + 1, 7] if V > 8 else list(range(V))
    for s, v in zip(spots, (top[0], top[0], top[1], top[0])):
        x[s] = v
    return x


def run_argmax(device, kernels, x):
    out = device.upload(np.full(4, 0xDEADBEEF, np.uint32))
    submit(device, lambda rec: kernels.argmax(rec, device.upload(x), out, x.size))
    return int(out.read(np.uint32, 1)[0])


@pytest.mark.parametrize("V", [VOCAB, 4097, 1001, 3])
def test_argmax(device, kernels, rng, V):
    x = vocab_with_ties(rng, V)
    want = ref.argmax(x)
    assert run_argmax(device, kernels, x) == want
    x[want] = -np.inf      # the next of the equal maxima
    assert run_argmax(device, kernels, x) == ref.argmax(x)


def test_argmax_edge_values(device, kernels):
    assert run_argmax(device, kernels, np.full(VOCAB, -3.0, np.float32)) == 0          # all equal
    x = np.full(5000, -np.inf, np.float32)
    x[4999] = -1e30
    assert run_argmax(device, kernels, x) == 4999
    assert run_argmax(device, kernels, np.full(777, -np.inf, np.float32)) == 0


def run_topk(device, kernels, x, k):
    vals = device.upload(np.full(k + 1, SENTINEL, np.float32))
    idx = device.upload(np.full(k + 1, 0xDEADBEEF, np.uint32))
    submit(device, lambda rec: kernels.topk(rec, device.upload(x), vals, idx, x.size, k))
    v, i = vals.read(np.float32), idx.read(np.uint32)
    assert v[k] == SENTINEL and i[k] == 0xDEADBEEF, "topk wrote past k"
    return v[:k], i[:k]


@pytest.mark.parametrize("V,k", [(VOCAB, 64), (VOCAB, 1), (VOCAB, 40), (1001, 50), (37, 37), (5, 3)])
def test_topk(device, kernels, rng, V, k):
    x = vocab_with_ties(rng, V)
    if V > 2000:
        x[1000:1100] = 2.75            # a run of equal values around the k-th place, across a chunk edge
        x[5000:5005] = 2.75
    v, i = run_topk(device, kernels, x, k)
    wv, wi = ref.topk(x, k)
    np.testing.assert_array_equal(i, wi)
    np.testing.assert_array_equal(v, wv)


def test_bad_topk_and_argmax_calls(device, kernels):
    b = device.buffer(VOCAB * 4)
    rec = device.record()
    with pytest.raises(GemforgeError, match=r"k=65 is outside 1\.\.64"):
        kernels.topk(rec, b, b, b, VOCAB, 65)
    with pytest.raises(GemforgeError, match=r"k=6 is outside 1\.\.5"):
        kernels.topk(rec, b, b, b, 5, 6)
    with pytest.raises(GemforgeError, match="buffer 'logits' has 1048576 bytes, the call needs 1048580"):
        kernels.argmax(rec, b, b, VOCAB + 1)
