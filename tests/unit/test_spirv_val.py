"""Every built artifact is valid SPIR-V for Vulkan 1.2 (spirv-val from SPIRV-Tools)."""
from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from gemforge.gen import manifest as mf

SPIRV_VAL = shutil.which("spirv-val")


@pytest.mark.skipif(SPIRV_VAL is None, reason="spirv-val not found (install spirv-tools, or run `make setup`)")
def test_every_artifact_passes_spirv_val(build):
    m = mf.load(build)
    arts = [a for a in m.artifacts.values() if a.target == "vulkan"]
    assert arts, f"no Vulkan artifacts in {build}"

    def check(a):
        proc = subprocess.run([SPIRV_VAL, "--target-env", "vulkan1.2", str(build / a.file)],
                              capture_output=True, text=True, timeout=120)
        return a.name, proc.returncode, (proc.stderr or proc.stdout).strip()

    with ThreadPoolExecutor(max_workers=4) as pool:
        bad = [f"{name}: {msg}" for name, rc, msg in pool.map(check, arts) if rc != 0]
    assert not bad, f"{len(bad)} of {len(arts)} artifacts fail spirv-val:\n" + "\n".join(bad)


@pytest.mark.skipif(SPIRV_VAL is None, reason="spirv-val not found (install spirv-tools, or run `make setup`)")
def test_spirv_val_rejects_a_broken_module(tmp_path):
    """The check above can fail: a truncated module is rejected."""
    bad = tmp_path / "bad.spv"
    bad.write_bytes(b"\x03\x02\x23\x07" + b"\x00" * 12)
    proc = subprocess.run([SPIRV_VAL, "--target-env", "vulkan1.2", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
