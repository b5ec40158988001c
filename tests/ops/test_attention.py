"""attention (ring-buffer KV cache, grouped-query, causal or sliding window) and kv_write vs numpy.

Every cache slot holds random data, valid or not, so a kernel that reads a key it must not see
(future position, outside the window, an empty slot, an overwritten one) misses by O(1), far above
the tolerance (the spec's, relative to max(1, max |ref|)). Output rows past T must stay untouched.
Shapes: the models' GQA ratios (4 like the 270M/1B, 2 like the 4B..27B, and 1), head_dim 128 and
256, decode and prefill, wrapped rings, chunks that need the previous chunk's keys, T not a power
of two, a cache longer than 32768, and both the single-pass and the split + merge paths.
Prefill runs twice: on the portable kernel and on the cooperative-matrix one (attention_coop: fp16
q, k, v and probabilities, its own tolerance), the latter skipped where the device or build lacks it.
"""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.spec import load_spec
from gemforge.runtime import paths
from gemforge.runtime import reference as ref
from gemforge.runtime.errors import GemforgeError
from gemforge.gen.build import candidate_key
from tests.conftest import SENTINEL, assert_close, candidate, candidate_kernels

TOL = load_spec(paths.configs_dir() / "ops" / "attention.yaml").tolerance["f32"]
COOP_TOL = load_spec(paths.configs_dir() / "ops" / "attention_coop.yaml").tolerance["f32"]


@pytest.fixture
def impl(request, kernels):
    """Which prefill attention runs (parametrized indirectly): yields its tolerance."""
    if request.param == "coopmat":
        op, why = kernels.attention_choice(128)
        if op != "attention_coop":
            pytest.skip(f"no cooperative-matrix attention on this device/build: {why}")
    kernels.portable_attention = request.param == "portable"
    yield COOP_TOL if request.param == "coopmat" else TOL
    kernels.portable_attention = False


def with_impls(cases):
    """Every prefill case (T > 1) on both kernels, decode (T = 1) once."""
    return [pytest.param(*c, i, id=f"{'-'.join(map(str, c))}-{i}") for c in cases
            for i in ("portable", "coopmat") if c[0] > 1 or i == "portable"]


def upload_ctrl(device, pos0: int):
    ctrl = device.buffer(64, "ctrl", host=True)
    ctrl.write(np.array([pos0], np.uint32))
    return ctrl


def run_attention(device, kernels, q, kc, vc, pos0, window, scale, splits=None):
    T, Hq, D = q.shape
    C, Hkv, _ = kc.shape
    bq, bk, bv = device.upload(q), device.upload(kc), device.upload(vc)
    bo = device.upload(np.full((T + 1, Hq, D), SENTINEL, np.float32))
    rec = device.record()
    kernels.attention(rec, bq, bk, bv, bo, upload_ctrl(device, pos0), T, Hq, Hkv, D, C, window, scale, splits=splits)
    rec.submit()
    out = bo.read().reshape(T + 1, Hq, D)
    assert np.all(out[T] == SENTINEL), "attention wrote past row T"
    return out[:T]


def check(device, kernels, rng, T, Hq, Hkv, D, C, window, pos0, splits=None, qscale=1.0, tol=TOL):
    q = (rng.standard_normal((T, Hq, D)) * qscale).astype(np.float32)
    kc = rng.standard_normal((C, Hkv, D)).astype(np.float32)
    vc = rng.standard_normal((C, Hkv, D)).astype(np.float32)
    scale = D ** -0.5
    got = run_attention(device, kernels, q, kc, vc, pos0, window, scale, splits)
    assert_close(got, ref.attention(q, kc, vc, pos0, window, scale), tol,
                 f"attention T={T} Hq={Hq} Hkv={Hkv} D={D} C={C} window={window} pos0={pos0} splits={splits}")


CASES = [  # T, Hq, Hkv, D, C, window, pos0
    # decode
    (1, 4, 1, 256, 96, 0, 40),          # global, cache partly filled (slots past pos0 are empty)
    (1, 8, 4, 256, 40, 8, 1000),        # small window, wrapped ring, GQA 2
    (1, 2, 2, 128, 600, 512, 2000),     # window 512, wrapped, GQA 1
    (1, 4, 1, 128, 33000, 0, 40000),    # a cache longer than 32768 (wrapped: every slot valid)
    # prefill
    (7, 8, 4, 128, 24, 8, 50),          # small window over a wrapped ring: early rows need the previous chunk
    (37, 4, 1, 256, 128, 0, 60),        # global, GQA 4, after a first chunk
    (45, 2, 1, 128, 768, 512, 1000),    # window 512 with C = window + 256, wrapped
    (100, 4, 4, 256, 356, 0, 0),        # the first chunk of a sequence
    (256, 2, 1, 128, 300, 0, 40),       # the largest bucket
]


@pytest.mark.parametrize("T,Hq,Hkv,D,C,window,pos0,impl", with_impls(CASES), indirect=["impl"])
def test_attention(device, kernels, rng, T, Hq, Hkv, D, C, window, pos0, impl):
    check(device, kernels, rng, T, Hq, Hkv, D, C, window, pos0, tol=impl)


@pytest.mark.parametrize("splits", [1, 5])
@pytest.mark.parametrize("T,D,impl", with_impls([(1, 128), (1, 256), (19, 128), (19, 256)]), indirect=["impl"])
def test_attention_single_pass_and_split(device, kernels, rng, T, D, splits, impl):
    """Both output paths of every variant: splits = 1 writes out directly; with more, the last workgroup
    of each head combines the partials (decode) or attention_merge does (prefill). Five splits of ~70
    keys leave some splits empty for the early rows (causal)."""
    check(device, kernels, rng, T, 4, 2, D, 400, 0, 300, splits=splits, qscale=3.0, tol=impl)


# decode layouts (tuning candidates): keys per block x threads, so lanes per key (wg_size / decode_keys)
# run from 1 to 8 and slices of D from 4 to 64 vec4
DECODE_LAYOUTS = [(64, 16), (64, 32), (128, 32), (128, 64), (128, 128)]


@pytest.fixture(scope="module")
def decode_layout_kernels(device, tmp_path_factory):
    return candidate_kernels(device, tmp_path_factory.mktemp("attention-layouts"), "attention",
                             [{"mode": "decode", "wg_size": wg, "decode_keys": bc} for wg, bc in DECODE_LAYOUTS])


@pytest.mark.parametrize("wg,keys", DECODE_LAYOUTS)
@pytest.mark.parametrize("D", [128, 256])
def test_decode_layouts(device, decode_layout_kernels, rng, D, wg, keys):
    """Every decode layout, single pass and split, global and windowed, against numpy."""
    k = decode_layout_kernels
    name = f"attention_decode_d{D}@" + candidate_key({"wg_size": wg, "decode_keys": keys, "prefill_rows": 32,
                                                      "prefill_keys": 32})
    k.pin(candidate(k, name, "attention:mode=decode,prefill_rows=32,prefill_keys=32"))
    try:
        for C, window, pos0, splits in ((400, 0, 300, 1), (400, 0, 300, 7), (700, 512, 1500, 3)):
            check(device, k, rng, 1, 4, 2, D, C, window, pos0, splits=splits, qscale=3.0)
    finally:
        k.unpin("attention", mode="decode", head_dim=D)


def test_every_attention_variant_is_tested(kernels):
    built = {(a.axes["mode"], a.axes["head_dim"]) for a in kernels.manifest.artifacts.values() if a.op == "attention"}
    tested = {("decode" if c[0] == 1 else "prefill", c[3]) for c in CASES}
    assert built and built <= tested, f"untested attention variants: {sorted(built - tested)}"
    coop = {a.axes["head_dim"] for a in kernels.manifest.artifacts.values() if a.op == "attention_coop"}
    assert coop <= {c[3] for c in CASES if c[0] > 1}, f"untested attention_coop variants: {sorted(coop)}"
    merged = {a.axes["head_dim"] for a in kernels.manifest.artifacts.values() if a.op == "attention_merge"}
    assert merged <= {128, 256}, f"untested attention_merge variants: {sorted(merged - {128, 256})}"


@pytest.mark.parametrize("impl", ["portable", "coopmat"], indirect=True)
@pytest.mark.parametrize("window,C,chunks", [(8, 24, [16, 16, 5, 1, 1, 13]), (0, 64, [16, 7, 1, 1, 20])])
def test_chunked_sequence_matches_dense_attention(device, kernels, rng, window, C, chunks, impl):
    """The model's use: per chunk, kv_write K and V, then attention; compared with plain attention over
    the whole sequence so far (no ring in the reference)."""
    Hq, Hkv, D = 4, 2, 128
    n = sum(chunks)
    q, k, v = (rng.standard_normal((n, h, D)).astype(np.float32) for h in (Hq, Hkv, Hkv))
    kc = device.upload(rng.standard_normal((C, Hkv, D)).astype(np.float32))
    vc = device.upload(rng.standard_normal((C, Hkv, D)).astype(np.float32))
    ctrl = device.buffer(64, "ctrl", host=True)
    pos = 0
    for T in chunks:
        ctrl.write(np.array([pos], np.uint32))
        bq, bk, bv = (device.upload(a[pos:pos + T]) for a in (q, k, v))
        bo = device.buffer(T * Hq * D * 4)
        rec = device.record()
        kernels.kv_write(rec, bk, kc, ctrl, T, C, Hkv * D)
        kernels.kv_write(rec, bv, vc, ctrl, T, C, Hkv * D)
        kernels.attention(rec, bq, kc, vc, bo, ctrl, T, Hq, Hkv, D, C, window, 0.1)
        rec.submit()
        want = ref.attention_dense(q[pos:pos + T], k[:pos + T], v[:pos + T], np.arange(pos, pos + T), window, 0.1)
        assert_close(bo.read().reshape(T, Hq, D), want, impl if T > 1 else TOL,
                     f"chunk at {pos} (T={T}, window={window})")
        pos += T


def test_split_attention_repeated_in_one_recording(device, kernels, rng):
    """The split path's arrival counters go back to zero: the same split attention three times in one
    recording (as the decode step runs it once per layer), then the recording submitted again, each
    output right. Splits are forced above the keys there are, so most workgroups have no work."""
    Hq, Hkv, D, C, pos0 = 8, 2, 256, 512, 200
    q = (rng.standard_normal((3, 1, Hq, D)) * 3).astype(np.float32)
    kc, vc = (rng.standard_normal((C, Hkv, D)).astype(np.float32) for _ in range(2))
    bk, bv = device.upload(kc), device.upload(vc)
    bqs = [device.upload(q[i]) for i in range(3)]
    outs = [device.buffer(Hq * D * 4) for _ in range(3)]
    ctrl = upload_ctrl(device, pos0)
    rec = device.record()
    for bq, bo in zip(bqs, outs):
        kernels.attention(rec, bq, bk, bv, bo, ctrl, 1, Hq, Hkv, D, C, 0, D ** -0.5, splits=64)
    for _ in range(2):
        rec.submit()
        for i, bo in enumerate(outs):
            assert_close(bo.read().reshape(1, Hq, D), ref.attention(q[i], kc, vc, pos0, 0, D ** -0.5), TOL,
                         f"split attention, call {i}")
            bo.write(np.zeros(Hq * D, np.float32))


def test_reference_ring_matches_dense(rng):
    """The reference's ring-buffer rule agrees with plain attention over the sequence (pure numpy)."""
    Hq, Hkv, D, window, C = 4, 2, 16, 5, 9
    n = 23
    q, k, v = (rng.standard_normal((n, h, D)).astype(np.float32) for h in (Hq, Hkv, Hkv))
    kc = vc = np.full((C, Hkv, D), np.nan, np.float32)
    pos = 0
    for T in (4, 4, 1, 3, 4, 1, 2, 4):
        kc, vc = ref.kv_write(kc, k[pos:pos + T], pos), ref.kv_write(vc, v[pos:pos + T], pos)
        got = ref.attention(q[pos:pos + T], kc, vc, pos, window, 0.3)
        want = ref.attention_dense(q[pos:pos + T], k[:pos + T], v[:pos + T], np.arange(pos, pos + T), window, 0.3)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        pos += T
    assert list(ref.ring_positions(5, 7)) == [5, 6, 7, 3, 4]
    assert list(ref.ring_positions(5, 2)) == [0, 1, 2, -2, -1]


@pytest.mark.parametrize("T,C,pos0", [(6, 10, 7), (1, 10, 19), (10, 10, 3)])
def test_kv_write(device, kernels, rng, T, C, pos0):
    """Rows land in slots (pos0 + t) mod C (wrapping); every other slot and the padding rows are left alone."""
    row = 2 * 128
    src = rng.standard_normal((T + 2, row)).astype(np.float32)       # 2 padding rows that must not be written
    cache = rng.standard_normal((C, row)).astype(np.float32)
    bc = device.upload(cache)
    rec = device.record()
    kernels.kv_write(rec, device.upload(src), bc, upload_ctrl(device, pos0), T, C, row)
    rec.submit()
    want = ref.kv_write(cache, src[:T], pos0)
    assert not np.array_equal(want, cache)
    np.testing.assert_array_equal(bc.read().reshape(C, row), want)


def test_bad_calls_get_one_clear_error(device, kernels):
    b = device.buffer(1 << 16)
    rec = device.record()
    with pytest.raises(GemforgeError, match="6 query heads are not a multiple of 4 kv heads"):
        kernels.attention(rec, b, b, b, b, b, 1, 6, 4, 128, 16, 0, 0.1)
    with pytest.raises(GemforgeError, match="12 rows do not fit a 10-slot cache"):
        kernels.kv_write(rec, b, b, b, 12, 10, 256)
    with pytest.raises(GemforgeError, match="buffer 'kcache' has 65536 bytes, the call needs 1048576"):
        kernels.attention(rec, b, b, b, b, b, 1, 4, 1, 256, 1024, 0, 0.1)
