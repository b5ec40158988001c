"""How the host drives the GPU: Device.time_calls (the tuner's timing: every call in turn in one
recording) and Recording.wait (polling the fence for Device.spin_s before blocking; GEMFORGE_SPIN_MS)."""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.runtime import formats
from gemforge.runtime import reference as ref
from gemforge.runtime.errors import GemforgeError
from gemforge.runtime.kernels import Kernels, upload_weight
from gemforge.runtime.vulkan import spin_seconds
from tests.conftest import assert_close


def test_time_calls_times_each_call_in_turn(device, rng):
    """Device.time_calls: one time per call, from the same recording (calls interleaved as in a model step);
    each is a positive number of seconds, and fewer than two recordings of each call is refused."""
    k = Kernels(device)
    Ws = [upload_weight(device, rng.standard_normal((N, 256)).astype(np.float32), "f32", f"w{N}") for N in (64, 512)]
    x, y = device.upload(rng.standard_normal(256).astype(np.float32)), device.buffer(4 * 512)
    calls = [lambda rec, W=W: k.linear(rec, W, x, y, 1) for W in Ws]
    ts = device.time_calls(calls, 3, "test", warm_s=0.0, rounds=2)
    assert len(ts) == 2 and all(0 < t < 1 for t in ts)
    assert 0 < device.time_call(calls[0], 2) < 1
    with pytest.raises(GemforgeError, match="time_calls needs"):
        device.time_calls(calls, 1)


@pytest.mark.parametrize("spin_s", [0.0, 1e-6, 0.5])
def test_wait_polls_then_blocks(device, kernels, rng, spin_s):
    """Recording.wait: blocking at once (spin_s 0, a software device's default), polling a moment and then
    blocking (1e-6 s: the GPU is not done that soon), or polling until the work is done; each returns
    only once the submit has run (the product is complete and right)."""
    assert device.spin_s == spin_seconds(device.info)
    N, K = 1000, 640
    w = rng.standard_normal((N, K)).astype(np.float32)
    x = rng.standard_normal((1, K)).astype(np.float32)
    W = upload_weight(device, w, "q8_0", "w")
    bx, y = device.upload(x), device.buffer(4 * N)
    rec = device.record()
    for _ in range(20):
        kernels.linear(rec, W, bx, y, 1)
    saved, device.spin_s = device.spin_s, spin_s
    try:
        rec.submit()
    finally:
        device.spin_s = saved
        rec.destroy()
    assert_close(y.read(np.float32, N)[None], ref.linear(x, formats.quantize_roundtrip(w, "q8_0")), 1e-4,
                 f"product after a wait with spin_s {spin_s}")


def test_spin_ms_from_the_environment(device, monkeypatch):
    monkeypatch.delenv("GEMFORGE_SPIN_MS", raising=False)
    assert spin_seconds(device.info) == (0.0 if device.info.is_software else device.SPIN_S)
    monkeypatch.setenv("GEMFORGE_SPIN_MS", "2.5")
    assert spin_seconds(device.info) == 0.0025
    monkeypatch.setenv("GEMFORGE_SPIN_MS", "0")
    assert spin_seconds(device.info) == 0.0
    for bad in ("fast", "-1", "nan", "1e9"):
        monkeypatch.setenv("GEMFORGE_SPIN_MS", bad)
        with pytest.raises(GemforgeError, match="GEMFORGE_SPIN_MS"):
            spin_seconds(device.info)
