"""On a Phoenix machine after `make kernels` (with mlir-aie and Peano): every compiled design of the 270M runs
on the NPU and matches the numpy W8A8 reference.  Skipped, with the reason, everywhere else (no NPU here)."""
from __future__ import annotations

import pytest

from gemforge.gen import manifest as mf
from gemforge.runtime import npu, paths
from gemforge.runtime.errors import GemforgeError
from gemforge.runtime.npu_cli import CHECK_TOLERANCE

MODEL = "gemma3-270m"


def _ready() -> str | None:
    missing = npu.missing_runtime()
    if missing:
        return "; ".join(missing)
    try:
        arts = [a for a in mf.load(paths.build_dir()).artifacts.values() if a.target == "npu"]
    except GemforgeError as e:
        return e.message
    if not any(MODEL in a.extra.get("xclbins", {}) for a in arts):
        return f"no compiled NPU designs for {MODEL} (run `make kernels` with mlir-aie and Peano installed)"
    return None


@pytest.mark.skipif(_ready() is not None, reason=f"needs an NPU: {_ready()}")
def test_every_270m_design_on_the_npu():
    results = npu.check_designs(MODEL)
    bad = [r for r in results if r[3] > CHECK_TOLERANCE]
    assert results and not bad, bad
