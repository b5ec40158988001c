"""linear (matvec for T = 1, bucketed matmul for 1 < T <= 256) against the numpy reference, every format.

Every T > 1 case runs twice: on the portable matmul and on the cooperative-matrix matmul
(matmul_coop, fp16 inputs), the latter skipped where the device or the build lacks it; T = 1 (the
matrix-vector product, fp32 x: the kernels fixture's decode_dot) runs once.

The reference multiplies by the exact values the device holds (formats.quantize_roundtrip /
formats.unpack), so the tolerance (the spec's, relative to max |ref|) covers only the order of
the fp32 sums. Activations up to ~1e3, weights ~0.05 (Gemma's scale). Output rows >= T and
columns outside the weight are pre-filled with a sentinel that must survive.
"""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.spec import BUCKETS, load_spec
from gemforge.runtime import formats, paths
from gemforge.runtime import reference as ref
from gemforge.runtime.errors import GemforgeError
from gemforge.runtime.kernels import Split, row_words, upload_packed_weight, upload_weight
from tests.conftest import SENTINEL, assert_close, dispatch_names

FORMATS = formats.FORMATS
SPECS = {op: load_spec(paths.configs_dir() / "ops" / f"{op}.yaml") for op in ("matvec", "matmul", "matmul_coop")}


@pytest.fixture
def impl(request, kernels):
    """Which prefill matmul the test's T > 1 products use (parametrized indirectly: see ``cases``)."""
    if request.param == "coopmat":
        op, why = kernels.matmul_choice("q8_0", 256)
        if op != "matmul_coop":
            pytest.skip(f"no cooperative-matrix matmul on this device/build: {why}")
    kernels.portable_only = request.param == "portable"
    yield request.param
    kernels.portable_only = False


def cases(Ts):
    """(T, impl) pairs: every T > 1 on both matmuls, T = 1 (the matrix-vector product) once."""
    return [pytest.param(T, i, id=f"T{T}-{i}") for T in Ts for i in ("portable", "coopmat") if T > 1 or i == "portable"]


def _op(T: int, impl: str) -> str:
    return "matvec" if T == 1 else ("matmul_coop" if impl == "coopmat" else "matmul")


def tolerance(fmt: str, T: int, impl: str = "portable") -> float:
    return SPECS[_op(T, impl)].tolerance[fmt]


def expected_kernel(fmt: str, T: int, impl: str = "portable") -> str:
    if T == 1:
        return f"matvec_{fmt}"
    return f"{_op(T, impl)}_{fmt}_b{min(b for b in BUCKETS if b >= T)}"


def expected_dispatches(fmt: str, T: int, impl: str = "portable", parts: int = 1, split_sum: bool = False) -> list[str]:
    """The kernels linear dispatches: the cooperative-matrix matmul's fp16 x first (to_f16, once per call),
    then one product per weight part, each followed by split_sum where K is split."""
    one = [expected_kernel(fmt, T, impl)] + (["split_sum"] if split_sum else [])
    return (["to_f16"] if _op(T, impl) == "matmul_coop" else []) + one * parts


def splits_of(kernels, W, T: int) -> int:
    """The K splits linear gives W at T rows on the cooperative-matrix matmul (Kernels.k_splits with the
    variant's values: the device's cost model where its tuning file has one)."""
    bucket = min(b for b in BUCKETS if b >= T)
    v = kernels.matmul_program(W.fmt, bucket, shape=kernels.shape_class(W)).artifact.values
    tm, tn = min(v["tile_m"], bucket), v["tile_n"]
    tiles = -(-W.N // tn) * -(-T // tm)
    s = kernels.k_splits(tiles, W.K, v["tile_k"], T, W.N, v.get("resident_groups", 0), v.get("split_step_bytes", 0))[0]
    return s


def make(rng, T, N, K):
    x = rng.uniform(-1e3, 1e3, (T, K)).astype(np.float32)
    w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    return x, w


def run(device, kernels, W, x, T, pad_rows=0):
    """linear on the device; returns (y [T, N], the names of the dispatched kernels). Checks the padding."""
    N = W.N
    bx = device.upload(x)
    by = device.upload(np.full((T + pad_rows, N), SENTINEL, np.float32))
    names = dispatch_names(device, lambda rec: kernels.linear(rec, W, bx, by, T))
    y = by.read(np.float32, (T + pad_rows) * N).reshape(T + pad_rows, N)
    assert np.all(y[T:] == SENTINEL), "linear wrote rows >= T"
    return y[:T], names


@pytest.mark.parametrize("T,impl", cases([1, 2, 17, 33, 100, 256]), indirect=["impl"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_and_bucket(device, kernels, rng, impl, fmt, T):
    """K = 1000: not a multiple of the tile nor of a 16-byte chunk of q8_0/q4_0; N = 77: odd."""
    N, K = 77, 1000
    x, w = make(rng, T, N, K)
    W = upload_weight(device, w, fmt, "w")
    bucket = min((b for b in BUCKETS if b >= T), default=0)
    y, names = run(device, kernels, W, x, T, pad_rows=max(0, bucket - T))
    assert names == expected_dispatches(fmt, T, impl, split_sum=impl == "coopmat" and splits_of(kernels, W, T) > 1)
    assert_close(y, ref.linear(x, formats.quantize_roundtrip(w, fmt)), tolerance(fmt, T, impl), f"linear {fmt} T={T}")


@pytest.mark.parametrize("T,impl", cases([1, 17]), indirect=["impl"])
@pytest.mark.parametrize("N,K", [(1, 100), (3, 32), (131, 40), (64, 96), (9, 5376)])
@pytest.mark.parametrize("fmt", FORMATS)
def test_awkward_shapes(device, kernels, rng, impl, fmt, N, K, T):
    """N = 1, odd N, a workgroup's rows not filled, K < a tile, odd numbers of blocks, the 27B hidden size."""
    x, w = make(rng, T, N, K)
    W = upload_weight(device, w, fmt, "w")
    y, _ = run(device, kernels, W, x, T, pad_rows=3)
    assert_close(y, ref.linear(x, formats.quantize_roundtrip(w, fmt)), tolerance(fmt, T, impl),
                 f"linear {fmt} {N}x{K} T={T}")


@pytest.mark.parametrize("T,impl", cases([1, 40]), indirect=["impl"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_split_weight(device, kernels, rng, impl, fmt, T):
    """A weight in row parts (as a vocabulary-sized head is): each part writes its own columns of y."""
    N, K = 1001, 160
    x, w = make(rng, T, N, K)
    qw, sw = row_words(fmt, K)
    W = upload_weight(device, w, fmt, "w", max_part_bytes=4 * (qw + sw) * 300)
    assert len(W.parts) == 4 and W.parts[-1].rows != W.parts[0].rows
    y, names = run(device, kernels, W, x, T, pad_rows=2)
    assert names == expected_dispatches(fmt, T, impl, parts=4)
    assert_close(y, ref.linear(x, formats.quantize_roundtrip(w, fmt)), tolerance(fmt, T, impl),
                 f"split linear {fmt} T={T}")


@pytest.mark.parametrize("impl", ["coopmat"], indirect=True)
@pytest.mark.parametrize("fmt", FORMATS)
def test_split_k(device, kernels, rng, impl, fmt):
    """Few output tiles and a long K: the cooperative-matrix product splits K over workgroups and
    split_sum adds the partials (a K that is not a multiple of the split, nor of 32)."""
    N, K, T = 200, 4001, 100
    x, w = make(rng, T, N, K)
    W = upload_weight(device, w, fmt, "w")
    assert splits_of(kernels, W, T) > 1, "the shape must split K"
    y, names = run(device, kernels, W, x, T, pad_rows=28)
    assert names == expected_dispatches(fmt, T, impl, split_sum=True)
    assert_close(y, ref.linear(x, formats.quantize_roundtrip(w, fmt)), tolerance(fmt, T, impl), f"split-K {fmt}")


@pytest.mark.parametrize("impl", ["coopmat"], indirect=True)
def test_split_k_deferred_sum(device, kernels, rng, impl):
    """linear(..., defer_sum=True) where K splits: no split_sum, y untouched, and a Split whose partials
    sum in order to what split_sum writes (bit for bit); where nothing splits (decode), y as usual."""
    N, K, T = 200, 4001, 100
    x, w = make(rng, T, N, K)
    W = upload_weight(device, w, "q8_0", "w")
    bx = device.upload(x)
    want, _ = run(device, kernels, W, x, T)
    by = device.upload(np.full((T, N), SENTINEL, np.float32))
    got = []
    names = dispatch_names(device, lambda rec: got.append(kernels.linear(rec, W, bx, by, T, defer_sum=True)))
    assert names == expected_dispatches("q8_0", T, impl)            # no split_sum
    assert isinstance(got[0], Split) and got[0].splits == splits_of(kernels, W, T) > 1
    assert np.all(by.read(np.float32, T * N) == SENTINEL), "a deferred sum must leave y alone"
    parts = got[0].part.buffer.read(np.float32, got[0].splits * T * N, offset=got[0].part.offset)
    acc = np.zeros(T * N, np.float32)
    for s in range(got[0].splits):
        acc = acc + parts[s * T * N:(s + 1) * T * N]
    np.testing.assert_array_equal(acc.reshape(T, N), want)
    rec = device.record()
    assert kernels.linear(rec, W, bx, by, 1, defer_sum=True) is by
    rec.destroy()


def _dequant_rows(words, fmt, N, K, rows):
    """formats.unpack of the given rows of a packed [N, K] matrix (quants and scales gathered alike)."""
    qw, sw = row_words(fmt, K)
    part = np.concatenate([words[:N * qw].reshape(N, qw)[rows].reshape(-1),
                           words[N * qw:].reshape(N, sw)[rows].reshape(-1)])
    return formats.unpack(part, fmt, len(rows), K)


@pytest.fixture(scope="module")
def vocab_head(device):
    """The tied 270M embedding / output head, 262144 x 640 q8_0 (178 MB: random codes, Gemma-sized scales)."""
    N, K, fmt = 262144, 640, "q8_0"
    rng = np.random.default_rng(7)
    qw, sw = row_words(fmt, K)
    quants = np.frombuffer(rng.bytes(4 * N * qw), np.uint32)
    scales = (rng.uniform(0.5, 1.5, N * sw * 2) * 0.05 / 73).astype(np.float16).view(np.uint32)
    words = np.concatenate([quants, scales])
    return upload_packed_weight(device, words, fmt, N, K, "token_embd"), words


def test_vocab_sized_head_and_tied_embedding(device, kernels, vocab_head):
    """Logits of one token over the whole vocabulary, and embedding rows from the same weight.

    The weight is larger than lavapipe's 128 MiB binding limit, so it comes in row parts. The
    reference is checked on every 16th row plus every row near a part boundary and the ends.
    """
    W, words = vocab_head
    N, K = W.N, W.K
    if W.nbytes > device.info.max_buffer_bytes:
        assert len(W.parts) >= 2
    edges = [p.row0 for p in W.parts] + [N]
    rows = np.unique(np.concatenate([np.arange(0, N, 16)] +
                                    [np.arange(max(0, e - 40), min(N, e + 40)) for e in edges]))
    w_rows = _dequant_rows(words, W.fmt, N, K, rows)

    x = np.random.default_rng(8).uniform(-30, 30, (1, K)).astype(np.float32)   # a normed hidden state
    y, names = run(device, kernels, W, x, 1)
    assert names == [expected_kernel(W.fmt, 1)] * len(W.parts)
    assert_close(y[:, rows], ref.linear(x, w_rows), tolerance(W.fmt, 1), "vocab head")

    ids = np.concatenate([[0, N - 1], [e - 1 for e in edges[1:-1]], edges[1:-1], rows[::997]]).astype(np.uint32)
    assert np.isin(ids, rows).all()     # rows whose reference we have, both sides of every part boundary
    out = device.buffer(4 * len(ids) * K)
    rec = device.record()
    kernels.embed(rec, W, device.upload(ids), out, len(ids), 25.298221)
    rec.submit()
    want = ref.embed(w_rows, np.searchsorted(rows, ids), 25.298221)
    tol = load_spec(paths.configs_dir() / "ops" / "embed.yaml").tolerance[W.fmt]
    assert_close(out.read(np.float32, len(ids) * K).reshape(len(ids), K), want, tol, "vocab embedding")


@pytest.mark.parametrize("T,message", [(257, r"T = 257 rows exceed the largest prefill bucket built for f16 \(256\)"),
                                       (0, "T = 0 rows; at least 1 is needed")])
def test_rows_outside_the_buckets_are_an_error(device, kernels, rng, T, message):
    W = upload_weight(device, rng.standard_normal((8, 64)).astype(np.float32), "f16", "w")
    bx, by = device.buffer(4 * max(T, 1) * 64), device.buffer(4 * max(T, 1) * 8)
    with pytest.raises(GemforgeError, match=message):
        kernels.linear(device.record(), W, bx, by, T)


def test_too_small_buffers_are_an_error(device, kernels, rng):
    W = upload_weight(device, rng.standard_normal((8, 64)).astype(np.float32), "q4_0", "w")
    x, y = device.buffer(4 * 4 * 64, "x"), device.buffer(4 * 4 * 8, "y")
    with pytest.raises(GemforgeError, match=r"linear 'w' x: buffer 'x' holds 1024 bytes, 1280 needed"):
        kernels.linear(device.record(), W, x, y, 5)
    with pytest.raises(GemforgeError, match=r"linear 'w' y: buffer 'y' holds 128 bytes, 160 needed"):
        kernels.linear(device.record(), W, device.buffer(4 * 5 * 64), y, 5)



def test_shape_classes_use_their_tuning(device, build):
    """configs/tuning/<device>-<class>.yaml: products of at most SMALL_ELEMENTS weights run the small
    file's artifact, products whose K is at least LONG_RATIO times N the long file's, the others the
    device's main tuning (here a build whose only class-tuned artifacts are relabelled default
    matvec_f32s, so the choice is visible by tuning key)."""
    import dataclasses

    from gemforge.gen import manifest as mf
    from gemforge.runtime.kernels import Kernels
    man = mf.load(build)
    base = man.find("matvec", tuning_key=device.info.key, format="f32", input="plain", out="plain")
    for cls in ("small", "long"):
        man.artifacts[f"matvec_f32@{cls}"] = dataclasses.replace(base, name=f"matvec_f32@{cls}",
                                                                 tuning_key=f"{device.info.key}-{cls}")
    k = Kernels(device, build, manifest=man)
    rng = np.random.default_rng(3)
    big = k.SMALL_ELEMENTS // 1024 + 1
    for N, K, cls in ((64, 96, "small"), (big, 1024, ""), (1024, 4104, "long"), (2100, 2100, "")):
        assert k.shape_class_of(N, K) == cls, (N, K)
        want = f"{device.info.key}-{cls}" if cls else base.tuning_key
        w = rng.standard_normal((N, K)).astype(np.float32)
        W = upload_weight(device, w, "f32", "w")
        x = rng.standard_normal((1, K)).astype(np.float32)
        y = device.buffer(4 * N)
        rec = device.record()
        k.linear(rec, W, device.upload(x), y, 1)
        rec.submit()
        assert k.program("matvec", shape=k.shape_class(W), format="f32", input="plain", out="plain").artifact.tuning_key == want
        assert_close(y.read(np.float32, N)[None], ref.linear(x, w), tolerance("f32", 1), f"matvec {N}x{K}")
