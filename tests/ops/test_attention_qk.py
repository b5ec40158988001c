"""attention_qk: decode attention with qk_rope folded in (q/k norm, RoPE and the KV write in the same
dispatch). Against the two dispatches it replaces (qk_rope, then attention) on the same inputs -- the
same fp32 operations, so equal up to the compiler's contraction choices -- and against numpy's
norm, RoPE, cache write and attention. Caches hold random old entries; the new slot's old contents
must not leak in (the kernel uses its own copy of the new k and v)."""
from __future__ import annotations

import numpy as np
import pytest

from gemforge.gen.spec import load_spec
from gemforge.runtime import paths
from gemforge.runtime import reference as ref
from gemforge.runtime.errors import GemforgeError
from gemforge.runtime.kernels import Split
from gemforge.runtime.vulkan import View
from tests.conftest import SENTINEL, assert_close
from tests.ops.test_qk_rope import qk_inputs

TOL = load_spec(paths.configs_dir() / "ops" / "attention_qk.yaml").tolerance["f32"]

CASES = [  # Hq, Hkv, D, C, window, pos0, base, scale, splits
    (4, 1, 256, 96, 0, 0, 1e4, 1.0, None),          # the first token: its own key is the only one
    (4, 1, 256, 96, 0, 40, 1e6, 8.0, None),         # 270M-like global layer, cache partly filled
    (8, 4, 256, 40, 8, 1000, 1e4, 1.0, None),       # small window over a wrapped ring, GQA 2
    (32, 16, 128, 600, 512, 2000, 1e4, 1.0, 7),     # 27B-like local layer, wrapped, split keys
    (2, 2, 128, 300, 0, 250, 1e6, 8.0, 1),          # one split: the newest key and all the rest in one pass
    (16, 2, 128, 64, 0, 63, 1e6, 1.0, 3),           # GQA 8: two tiles of 4 q heads per kv head
]


@pytest.mark.parametrize("Hq,Hkv,D,C,window,pos0,base,scale,splits", CASES)
def test_attention_qk(device, kernels, rng, Hq, Hkv, D, C, window, pos0, base, scale, splits):
    qkv, qw, kw, kc, vc, ctrl = qk_inputs(device, rng, 1, Hq, Hkv, D, C, pos0)
    qkv = qkv.reshape(-1)
    sc = D ** -0.5
    bqkv, bqw, bkw = device.upload(qkv), device.upload(qw), device.upload(kw)
    # the two dispatches it replaces
    k1, v1 = device.upload(kc), device.upload(vc)
    qn, out1 = device.buffer(Hq * D * 4), device.buffer(Hq * D * 4)
    rec = device.record()
    kernels.qk_rope(rec, bqkv, bqw, bkw, ctrl, qn, k1, v1, 1, Hq, Hkv, D, C, 1e-6, base, scale)
    kernels.attention(rec, qn, k1, v1, out1, ctrl, 1, Hq, Hkv, D, C, window, sc, splits=splits)
    rec.submit()
    # the fused one
    k2, v2 = device.upload(kc), device.upload(vc)
    out2 = device.upload(np.full(Hq * D + 1, SENTINEL, np.float32))
    rec = device.record()
    kernels.attention_qk(rec, bqkv, bqw, bkw, ctrl, k2, v2, out2, Hq, Hkv, D, C, window, sc, 1e-6, base, scale,
                         splits=splits)
    rec.submit()
    assert rec.names[0].split("@")[0] == f"attention_qk_d{D}"
    got = out2.read(np.float32, Hq * D + 1)
    assert got[-1] == SENTINEL, "attention_qk wrote past its output"
    what = f"Hq={Hq} Hkv={Hkv} D={D} C={C} window={window} pos0={pos0} splits={splits}"
    assert_close(got[:-1].reshape(1, Hq, D), out1.read().reshape(1, Hq, D), TOL, f"vs qk_rope + attention, {what}")
    np.testing.assert_array_equal(v2.read().reshape(C, -1), v1.read().reshape(C, -1))
    assert_close(k2.read().reshape(C, -1), k1.read().reshape(C, -1), TOL, "k cache vs qk_rope's")
    # numpy: norm + RoPE of q and k, the cache write, attention
    x = qkv.reshape(1, Hq + 2 * Hkv, D)
    pos = np.asarray([pos0])
    q = ref.rope_neox(ref.rmsnorm(x[:, :Hq], qw), pos, base, scale)
    k = ref.rope_neox(ref.rmsnorm(x[:, Hq:Hq + Hkv], kw), pos, base, scale)
    kc_want = ref.kv_write(kc.copy(), k.reshape(1, -1), pos0)
    vc_want = ref.kv_write(vc.copy(), x[:, Hq + Hkv:].reshape(1, -1), pos0)
    want = ref.attention(q, kc_want.reshape(C, Hkv, D), vc_want.reshape(C, Hkv, D), pos0, window, sc)
    assert_close(got[:-1].reshape(1, Hq, D), want, TOL, f"vs numpy, {what}")
    assert_close(k2.read().reshape(C, -1), kc_want, TOL, "k cache vs numpy")


def test_attention_qk_variants_are_tested(kernels):
    built = {a.axes["head_dim"] for a in kernels.manifest.artifacts.values() if a.op == "attention_qk"}
    assert built and built <= {c[2] for c in CASES}, f"untested attention_qk variants: {sorted(built)}"


def test_attention_qk_bad_calls(device, kernels):
    b = device.buffer(1 << 16)
    with pytest.raises(GemforgeError, match="split-K partials"):
        kernels.attention_qk(device.record(), Split(View(b, 0, 4096), 2, 512), b, b, b, b, b, b, 4, 1, 256, 16, 0,
                             0.1, 1e-6, 1e4, 1.0)
    with pytest.raises(GemforgeError, match="not a multiple"):
        kernels.attention_qk(device.record(), b, b, b, b, b, b, b, 3, 2, 256, 16, 0, 0.1, 1e-6, 1e4, 1.0)
    with pytest.raises(GemforgeError, match="buffer 'kcache'"):
        kernels.attention_qk(device.record(), b, b, b, b, device.buffer(64), b, b, 4, 1, 256, 16, 0, 0.1, 1e-6,
                             1e4, 1.0)
