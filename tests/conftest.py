"""Shared fixtures: one Vulkan device and one kernel build per test session.

GPU tests run on whatever Vulkan device the machine has (lavapipe in CI). They are
skipped, with the reason, only when no Vulkan device exists at all.
"""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def build():
    """Build every kernel once (incremental: about a second when up to date).

    Where glslc is absent (the GPU machine, which gets build/ carried from a machine with
    glslc), the carried build is used as it is, and the tests say so."""
    import shutil

    from gemforge.gen import manifest
    from gemforge.gen.build import build as do_build
    from gemforge.runtime import paths
    if shutil.which("glslc") is None:
        manifest.load(paths.build_dir())     # a clear error when there is no build at all
        print(f"\n[gemforge tests] no glslc here: using the prebuilt kernels in {paths.build_dir()}")
        return paths.build_dir()
    do_build(paths.build_dir(), log=lambda s: None)
    return paths.build_dir()


@pytest.fixture(scope="session")
def device():
    from gemforge.runtime.errors import DeviceError
    from gemforge.runtime.vulkan import Device
    try:
        dev = Device()
    except DeviceError as e:
        pytest.skip(f"no Vulkan device on this machine: {e}")
    print(f"\n[gemforge tests] Vulkan device: {dev.info.describe()}")
    yield dev
    dev.close()


@pytest.fixture(scope="session")
def kernels(device, build):
    """Kernels of the build. Decode products run on fp32 x (decode_dot 'float'): the op tests hold matvec to
    fp32 precision; tests/ops/test_matvec_dot.py switches to the integer-dot kernel."""
    from gemforge.runtime.kernels import Kernels
    k = Kernels(device, build)
    k.decode_dot = "float"
    return k


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


SENTINEL = np.float32(-7.25e9)     # fills output buffers past what a kernel may write


def dispatch_names(device, call, submits: int = 1) -> list[str]:
    """Record ``call(rec)`` into one command buffer, submit it ``submits`` times and wait; the names of
    the kernels it dispatched, without their tuning suffix (``matvec_q8_0@nvidia-h200`` -> ``matvec_q8_0``)."""
    rec = device.record()
    call(rec)
    for _ in range(submits):
        rec.submit()
    names = [n.split("@")[0] for n in rec.names]
    rec.destroy()
    return names


def assert_close(got, want, tol, what=""):
    """|got - want| <= tol * max(1, max|want|), elementwise; reports the worst element."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    err = np.abs(got - want)
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    assert np.all(np.isfinite(got)), f"{what}: non-finite output"
    assert err.max(initial=0.0) <= tol * scale, (
        f"{what}: max error {err.max():.3g} at {worst} (got {got[worst]:.6g}, want {want[worst]:.6g}) "
        f"exceeds {tol:g} x {scale:.3g}")


def candidate_kernels(device, tmp_dir, op: str, filters: list[dict], also: tuple[str, ...] = ()):
    """Kernels over a build holding tuning candidates of ``op`` (gen.build.candidates filters): built
    into ``tmp_dir`` where glslc is, else the carried build (which holds them when it was made with
    `gemforge kernels --tune-candidates ...`). ``also``: ops the calls need besides (built with their
    defaults). Tests look their candidates up with ``candidate``."""
    import shutil

    from gemforge.gen import manifest as mf
    from gemforge.runtime import paths
    from gemforge.runtime.kernels import Kernels
    built_here = shutil.which("glslc") is not None
    if built_here:
        from gemforge.gen.build import build
        build(tmp_dir, ops={op, *also}, tune_ops={op: [{k: str(v) for k, v in f.items()} for f in filters]},
              log=lambda s: None)
        bd = tmp_dir
    else:
        bd = paths.build_dir()
    k = Kernels(device, bd, mf.load(bd))
    k.decode_dot = "float"          # candidates of matvec, not matvec_dot
    k.candidates_built_here = built_here
    return k


def candidate(kernels, name: str, how: str):
    """The artifact ``name`` of a ``candidate_kernels`` build. Missing from a build made here, it is a
    failure (the spec no longer admits that point); missing from a carried build, a skip saying how to
    build it (``how``: the --tune-candidates filter)."""
    art = kernels.manifest.artifacts.get(name)
    if art is None:
        if kernels.candidates_built_here:
            pytest.fail(f"{name} was not built: its spec's constraints now reject this point")
        pytest.skip(f"{name} is not in the carried build (no glslc here; build it with "
                    f"`gemforge kernels --tune-candidates {how}` and carry build/)")
    return art
