"""matvec's thread layouts against numpy: row groups of fewer threads than a subgroup (shuffle
butterfly), of exactly one subgroup (subgroupAdd, no barrier), and of several subgroups (shared
memory), with rows per group both below and above the threads per group.

Which reduction path a layout takes depends on the device's subgroup size (8 on lavapipe, 32 on
NVIDIA), so the list spans 4 to 128 threads per group. The layouts are tuning candidates: built
into a temporary directory where glslc is (a layout the spec no longer admits then fails), else
taken from the carried build when it holds them (`gemforge kernels --tune-candidates matvec:...`),
else skipped with that reason.
"""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.build import candidate_key
from gemforge.gen.spec import load_spec
from gemforge.runtime import formats, paths
from gemforge.runtime import reference as ref
from gemforge.runtime.kernels import upload_weight
from tests.conftest import SENTINEL, assert_close, candidate, candidate_kernels

TOL = load_spec(paths.configs_dir() / "ops" / "matvec.yaml").tolerance

# (wg_size, row_groups, rows_per_wg, unroll): threads per group = wg_size / row_groups
LAYOUTS = [
    (32, 8, 4, 1),      # 4 threads per group, 4 rows: one row per lane
    (32, 4, 16, 1),     # 8 threads, 16 rows: two rows per lane
    (64, 4, 8, 2),      # 16 threads, unrolled
    (128, 4, 16, 1),    # 32 threads: one NVIDIA subgroup per group
    (256, 2, 2, 1),     # 128 threads: several subgroups per group
    (128, 1, 16, 1),    # the whole workgroup on one group of rows
]


def overrides(layout) -> dict:
    wg, groups, rows, unroll = layout
    return {"wg_size": wg, "row_groups": groups, "rows_per_wg": rows, "unroll": unroll}


@pytest.fixture(scope="module")
def layout_kernels(device, tmp_path_factory):
    """Kernels over a build that holds the layouts (see the module doc)."""
    return candidate_kernels(device, tmp_path_factory.mktemp("matvec-layouts"), "matvec",
                             [{"input": "plain", "out": "plain", **overrides(lay)} for lay in LAYOUTS])


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: "wg{}-g{}-r{}-u{}".format(*lay))
@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_matvec_layout(device, layout_kernels, rng, fmt, layout):
    name = f"matvec_{fmt}@{candidate_key(overrides(layout))}"
    layout_kernels.pin(candidate(layout_kernels, name, f"matvec:format={fmt},input=plain,out=plain,..."))
    try:
        # K: a partial chunk for every format; N: not a multiple of any workgroup's rows (the last
        # group of the last workgroup computes rows past N, which must not be written)
        for N, K in ((37, 1000), (203, 96), (9, 5376)):
            x = rng.uniform(-1e3, 1e3, (1, K)).astype(np.float32)
            w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
            W = upload_weight(device, w, fmt, "w")
            bx = device.upload(x)
            by = device.upload(np.full(N + 5, SENTINEL, np.float32))
            rec = device.record()
            layout_kernels.linear(rec, W, bx, by, 1)
            rec.submit()
            assert [n for n in rec.names] == [name]
            rec.destroy()
            y = by.read(np.float32, N + 5)
            assert np.all(y[N:] == SENTINEL), f"{name} wrote past its {N} rows"
            assert_close(y[None, :N], ref.linear(x, formats.quantize_roundtrip(w, fmt)), TOL[fmt],
                         f"{name} {N}x{K}")
    finally:
        layout_kernels.unpin("matvec", format=fmt, input="plain", out="plain")
