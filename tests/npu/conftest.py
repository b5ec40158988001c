"""NPU tests: generation, resource checks, emulation, the XRT host side with a pyxrt stand-in.

Nothing here needs an NPU, the NPU toolchain or a GPU; nothing here claims to have run on an NPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gemforge.gen.npu.render import aie_environment, render_design
from gemforge.runtime import paths

AIE_DIR = Path(paths.templates_dir()) / "aie"
_ENV = aie_environment(AIE_DIR)


def render(t):
    return render_design(t, AIE_DIR, _ENV)


@pytest.fixture
def rng():
    return np.random.default_rng(20251129)
