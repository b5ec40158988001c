"""matvec_dot: the decode product of q8_0/q4_0 weights on the integer dot product with int8 x.

Against a numpy emulation of what the kernel computes (x rounded to int8 per 16-byte weight chunk with
the scale max|x| / 127; integer sums of int8 x times the raw quants; scaled by both scales in fp32) to
fp32 summation-order precision, and against the fp32 product within the spec's tolerance (the cost of
rounding x). Partial chunks, fewer outputs than a workgroup's rows, a weight in row parts, an all-zero
chunk of x, out geglu; Kernels.matvec_choice's reasons, and 'int8' refused where it cannot run.
Skipped, saying so, on a device without the integer dot product.
"""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.spec import load_spec
from gemforge.runtime import formats, paths
from gemforge.runtime import reference as ref
from gemforge.runtime.errors import GemforgeError
from gemforge.runtime.kernels import row_words, upload_weight
from gemforge.gen.build import candidate_key
from tests.conftest import SENTINEL, assert_close, candidate, candidate_kernels, dispatch_names
from tests.ops.test_matvec_after import run_geglu_after

TOL = load_spec(paths.configs_dir() / "ops" / "matvec_dot.yaml").tolerance
FMTS = ["q8_0", "q4_0"]
CHUNK = {"q8_0": 16, "q4_0": 32}      # weights per 16-byte chunk: the span of one x scale


@pytest.fixture()
def dot_kernels(kernels):
    if "int_dot" not in kernels.device.info.features:
        pytest.skip(f"{kernels.device.info.name} has no integer dot product (VK_KHR_shader_integer_dot_product)")
    kernels.decode_dot = "int8"
    yield kernels
    kernels.decode_dot = "float"


def emulate(x, w, fmt, terms: int = 2):
    """What matvec_dot computes, from the exact integers: per chunk v = x / max|x| * 127 (fp32, as the
    kernel), xq = round(v), xr = round((v - xq) * 254) (two terms), x ~ (xq + xr / 254) * max|x| / 127."""
    N, K = w.shape
    C = CHUNK[fmt]
    Kp = -(-K // C) * C
    xp = np.zeros(Kp, np.float32)
    xp[:K] = x
    xc = xp.reshape(-1, C)
    amax = np.abs(xc).max(axis=1)
    inv = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0).astype(np.float32)
    v = xc * inv[:, None]
    xq = np.round(v)
    xr = np.round((v - xq) * np.float32(254)) if terms == 2 else 0 * v
    xe = (xq.astype(np.float64) + xr / 254.0) * (amax.astype(np.float64) / 127)[:, None]
    wq = formats.quantize_roundtrip(w, fmt).astype(np.float64)       # scale * (q - offset), exact
    wp = np.zeros((N, Kp), np.float64)
    wp[:, :K] = wq
    return (wp.reshape(N, -1, C) * xe[None]).sum(axis=(1, 2))


def run(device, kernels, W, x):
    N = W.N
    bx = device.upload(x)
    by = device.upload(np.full(N + 1, SENTINEL, np.float32))
    names = dispatch_names(device, lambda rec: kernels.linear(rec, W, bx, by, 1))
    y = by.read(np.float32, N + 1)
    assert y[N] == SENTINEL, "matvec_dot wrote past its outputs"
    return y[:N], names


@pytest.mark.parametrize("N,K", [(77, 1000), (640, 2048), (5, 37), (9, 5376)])
@pytest.mark.parametrize("fmt", FMTS)
def test_matvec_dot(device, dot_kernels, rng, fmt, N, K):
    x = rng.standard_normal(K).astype(np.float32)
    x[:CHUNK[fmt]] = 0.0                                   # an all-zero chunk: scale 0, contributes 0
    w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    W = upload_weight(device, w, fmt, "w")
    y, names = run(device, dot_kernels, W, x)
    assert names == [f"matvec_dot_{fmt}"]
    terms = dot_kernels.program("matvec_dot", shape=dot_kernels.shape_class(W), format=fmt, out="plain").artifact.values["x_terms"]
    assert_close(y, emulate(x, w, fmt, terms), 2e-5, f"matvec_dot {fmt} {N}x{K} vs its emulation")
    want = ref.linear(x[None], formats.quantize_roundtrip(w, fmt))[0]
    assert_close(y, want, TOL[fmt], f"matvec_dot {fmt} {N}x{K} vs the fp32 product")


@pytest.mark.parametrize("fmt", FMTS)
def test_matvec_dot_split_weight(device, dot_kernels, rng, fmt):
    N, K = 1001, 640
    x = rng.standard_normal(K).astype(np.float32)
    w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    qw, sw = row_words(fmt, K)
    W = upload_weight(device, w, fmt, "w", max_part_bytes=4 * (qw + sw) * 300)
    assert len(W.parts) == 4
    y, names = run(device, dot_kernels, W, x)
    assert names == [f"matvec_dot_{fmt}"] * 4
    assert_close(y, emulate(x, w, fmt), 2e-5, "split matvec_dot vs its emulation")


@pytest.mark.parametrize("fmt", FMTS)
def test_matvec_dot_geglu_after(device, dot_kernels, rng, fmt):
    F, K = 203, 96
    x = rng.standard_normal(K).astype(np.float32)
    w = (rng.standard_normal((2 * F, K)) * 0.3).astype(np.float32)
    W = upload_weight(device, w, fmt, "w_gate_up")
    y, names = run_geglu_after(device, dot_kernels, W, x)
    assert names == [f"matvec_dot_{fmt}_to_geglu"]
    assert_close(y, ref.geglu(emulate(x, w, fmt)[None])[0], 1e-4, f"matvec_dot geglu {fmt} vs its emulation")


# tuning points off the shipped entries: (wg_size, rows_per_wg, unroll, row_groups)
POINTS = [(64, 16, 1, 1), (64, 4, 2, 2), (32, 2, 4, 1), (128, 8, 1, 4)]


def point(p) -> dict:
    wg, rows, unroll, groups = p
    return {"wg_size": wg, "rows_per_wg": rows, "unroll": unroll, "row_groups": groups}


@pytest.fixture(scope="module")
def point_kernels(device, tmp_path_factory):
    if "int_dot" not in device.info.features:
        pytest.skip(f"{device.info.name} has no integer dot product (VK_KHR_shader_integer_dot_product)")
    k = candidate_kernels(device, tmp_path_factory.mktemp("matvec-dot-points"), "matvec_dot",
                          [{"out": "plain", **point(p)} for p in POINTS])
    k.decode_dot = "int8"
    return k


@pytest.mark.parametrize("p", POINTS, ids=lambda p: "wg{}-r{}-u{}-g{}".format(*p))
@pytest.mark.parametrize("fmt", FMTS)
def test_matvec_dot_points(device, point_kernels, rng, fmt, p):
    """Each point matches the emulation of its x rounding, on partial chunks and rows past N."""
    name = f"matvec_dot_{fmt}@{candidate_key(point(p))}"
    art = candidate(point_kernels, name, f"matvec_dot:format={fmt},out=plain,...")
    point_kernels.pin(art)
    try:
        for N, K in ((37, 1000), (9, 5376)):
            x = rng.uniform(-3, 3, K).astype(np.float32)
            x[CHUNK[fmt]:2 * CHUNK[fmt]] = 0.0
            w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
            W = upload_weight(device, w, fmt, "w")
            y, names = run(device, point_kernels, W, x)
            assert names == [f"matvec_dot_{fmt}"]
            assert_close(y, emulate(x, w, fmt, art.values["x_terms"]), 2e-5, f"{name} {N}x{K} vs its emulation")
    finally:
        point_kernels.unpin("matvec_dot", format=fmt, out="plain")


def test_choice_says_why(device, kernels):
    assert kernels.decode_dot == "float" and kernels.matvec_choice("q8_0") == ("matvec", "fp32 x")
    kernels.decode_dot = "auto"
    try:
        _auto_choices(device, kernels)
    finally:
        kernels.decode_dot = "float"


def _auto_choices(device, kernels):
    assert kernels.matvec_choice("f16") == ("matvec", "fp32 x (f16 has no integer-dot kernel)")
    if "int_dot" in device.info.features:
        assert kernels.matvec_choice("q4_0") == ("matvec_dot", "int8 x on the integer dot product")
    else:
        assert kernels.matvec_choice("q4_0")[1] == f"fp32 x ({device.info.name} lacks int_dot)"
        kernels.decode_dot = "int8"
        with pytest.raises(GemforgeError, match="decode products on the integer dot product: .* lacks int_dot"):
            kernels.matvec_choice("q4_0")
