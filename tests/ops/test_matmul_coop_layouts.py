"""matmul_coop's K-step pipelines against numpy: each step's global loads issued 1, 2 or 3 steps
ahead of its products (the prefetch param: one register slot per step in flight), with step counts
below, equal to and not a multiple of the depth, and K split over workgroups (each split walks its
own steps; the last one is shorter).

The layouts are tuning candidates (gemforge tune sweeps prefetch): built into a temporary directory
where glslc is, else taken from the carried build when it holds them (`gemforge kernels
--tune-candidates matmul_coop:...`), else skipped with that reason. A device without cooperative
matrices skips them all.
"""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.build import candidate_key
from gemforge.gen.spec import load_spec
from gemforge.runtime import formats, paths
from gemforge.runtime import reference as ref
from gemforge.runtime.kernels import upload_weight
from tests.conftest import SENTINEL, assert_close, candidate, candidate_kernels, dispatch_names

TOL = load_spec(paths.configs_dir() / "ops" / "matmul_coop.yaml").tolerance

BIG = dict(tile_m=128, tile_n=256, tile_k=32, warp_m=64, warp_n=32, stages=1, raster="m")   # the H200's tiles
SMALL = dict(tile_m=64, tile_n=128, tile_k=16, warp_m=32, warp_n=32, stages=1, raster="n")
LAYOUTS = [{**BIG, "prefetch": p} for p in (1, 2, 3)] + [{**SMALL, "prefetch": 2}]

# (N, K, T): K steps of 32 (of 16 for SMALL) -- 2 (fewer than 3 slots), 3, 32 with a partial last
# chunk; the last shape splits K under the fixed rule (split_sum adds the splits). T in the 256
# bucket (the layouts are its candidates), not a multiple of the row tile but once.
SHAPES = [(131, 40, 200), (64, 96, 129), (77, 1000, 256), (200, 4001, 150)]


def _id(layout) -> str:
    return f"{'big' if layout['tile_n'] == 256 else 'small'}-p{layout['prefetch']}"


@pytest.fixture(scope="module")
def coop_kernels(device, tmp_path_factory):
    """Kernels over a build that holds the layouts (see the module doc)."""
    k = candidate_kernels(device, tmp_path_factory.mktemp("matmul-coop-layouts"), "matmul_coop",
                          [{"bucket": 256, **lay} for lay in LAYOUTS], also=("to_f16", "split_sum"))
    op, why = k.matmul_choice("q8_0", 256)
    if op != "matmul_coop":
        pytest.skip(f"no cooperative-matrix matmul on this device/build: {why}")
    return k


@pytest.mark.parametrize("layout", LAYOUTS, ids=_id)
@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_matmul_coop_pipeline(device, coop_kernels, rng, fmt, layout):
    name = f"matmul_coop_{fmt}_b256@{candidate_key(layout)}"
    coop_kernels.pin(candidate(coop_kernels, name, f"matmul_coop:format={fmt},bucket=256,..."))
    try:
        for N, K, T in SHAPES:
            x = rng.uniform(-1e3, 1e3, (T, K)).astype(np.float32)
            w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
            W = upload_weight(device, w, fmt, "w")
            bx = device.upload(x)
            by = device.upload(np.full((T + 3, N), SENTINEL, np.float32))
            names = dispatch_names(device, lambda rec: coop_kernels.linear(rec, W, bx, by, T))
            assert f"matmul_coop_{fmt}_b256" in names
            assert ("split_sum" in names) == (K == 4001), names
            y = by.read(np.float32, (T + 3) * N).reshape(T + 3, N)
            assert np.all(y[T:] == SENTINEL), f"{name} wrote rows >= T"
            assert_close(y[:T], ref.linear(x, formats.quantize_roundtrip(w, fmt)), TOL[fmt], f"{name} {N}x{K} T={T}")
    finally:
        coop_kernels.unpin("matmul_coop", format=fmt, bucket=256)
