"""The fused q/k norm + RoPE + KV-cache write against the separate numpy references."""
import numpy as np
import pytest

from gemforge.gen.spec import load_spec
from gemforge.runtime import paths
from gemforge.runtime import reference as ref
from tests.conftest import assert_close

TOL = load_spec(paths.configs_dir() / "ops" / "qk_rope.yaml").tolerance["f32"]


def qk_inputs(device, rng, T, Hq, Hkv, D, C, pos0):
    """(qkv [T, Hq + 2 Hkv, D], q and k norm weights, k and v caches [C, Hkv D] of random old entries,
    a ctrl buffer holding pos0): the inputs of qk_rope and attention_qk."""
    qkv = (rng.standard_normal((T, Hq + 2 * Hkv, D)) * 20).astype(np.float32)
    qw = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
    kw = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
    kc = rng.standard_normal((C, Hkv * D)).astype(np.float32)
    vc = rng.standard_normal((C, Hkv * D)).astype(np.float32)
    ctrl = device.buffer(64, "ctrl", host=True)
    ctrl.write(np.asarray([pos0], np.uint32))
    return qkv, qw, kw, kc, vc, ctrl


@pytest.mark.parametrize("D,Hq,Hkv,T,pos0,C,base,scale", [
    (256, 4, 1, 1, 0, 768, 1e4, 1.0),          # 270M decode, first token
    (256, 4, 1, 37, 700, 768, 1e4, 1.0),       # a prefill chunk that wraps the sliding ring
    (256, 8, 4, 5, 30000, 2048, 1e6, 8.0),     # 4B-like global layer, large positions, linear scaling
    (128, 32, 16, 3, 120000, 1024, 1e6, 8.0),  # 27B-like (a short cache: the slot wraps)
])
def test_qk_rope(device, kernels, rng, D, Hq, Hkv, T, pos0, C, base, scale):
    qkv, qw, kw, kc0, vc0, ctrl = qk_inputs(device, rng, T, Hq, Hkv, D, C, pos0)
    bq, bk, bv = device.upload(qkv), device.upload(kc0), device.upload(vc0)
    bqn = device.buffer(T * Hq * D * 4)
    rec = device.record()
    kernels.qk_rope(rec, bq, device.upload(qw), device.upload(kw), ctrl, bqn, bk, bv, T, Hq, Hkv, D, C, 1e-6, base,
                    scale)
    rec.submit()
    positions = np.arange(pos0, pos0 + T)
    q = ref.rope_neox(ref.rmsnorm(qkv[:, :Hq], qw), positions, base, scale)
    k = ref.rope_neox(ref.rmsnorm(qkv[:, Hq:Hq + Hkv], kw), positions, base, scale)
    assert_close(bqn.read().reshape(T, Hq, D), q, TOL, "q")
    want_k = ref.kv_write(kc0.copy(), k.reshape(T, -1), pos0)
    want_v = ref.kv_write(vc0.copy(), qkv[:, Hq + Hkv:].reshape(T, -1), pos0)
    assert_close(bk.read().reshape(C, -1), want_k, TOL, "k cache")
    assert np.array_equal(bv.read().reshape(C, -1), want_v), "v cache"
