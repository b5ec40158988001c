"""Kernel calls for everything in a Gemma 3 step that is not a matrix product or a norm.

RoPE, the KV-cache write, attention (split over the keys when it pays; in decode, with q/k norm,
RoPE and the KV write folded in: attention_qk), GeGLU, add,
and the on-GPU argmax and top-k of the sampler.  ``AttentionOps`` is a mixin of
``Kernels`` (kernels.py): it uses ``self.device`` and ``self.program``.  Small device
buffers it needs (RoPE frequency tables, attention partials, argmax/top-k levels) are
made here once per ``Kernels`` and reused: dispatches in one recording never overlap
(a barrier precedes each), so one scratch buffer serves every layer.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import GemforgeError
from .kernels import cdiv, groups_2d, split_input
from .reference.attention import rope_inv_freq
from .vulkan import Buffer, Recording, View

LOG2E = 1.0 / math.log(2.0)
SCRATCH_ALIGN = 256        # byte offset granularity of scratch views (>= every device's minimum)


class AttentionOps:
    SPLIT_TARGET_GROUPS = 256   # attention workgroups aimed for when splitting keys (a large GPU, twice over)
    portable_attention = False  # True: prefill never runs attention_coop (tests of the portable kernel, A/B runs)

    # -- helpers ----------------------------------------------------------------------------
    def _scratch(self, kind: str, nbytes: int, zeroed: bool = False) -> Buffer:
        """A device buffer of at least ``nbytes`` for ``kind``, grown by powers of two (``zeroed``: made
        of zeros, for users that leave it zero again, like split attention's arrival counters).

        A replaced buffer stays alive: recordings made earlier still bind it."""
        key = ("scratch", kind)
        buf = self._cache.get(key)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                self._cache.setdefault(("scratch-retired",), []).append(buf)
            size = max(nbytes, min(max(4096, 1 << (nbytes - 1).bit_length()), self.device.info.max_buffer_bytes))
            buf = self._cache[key] = (self.device.upload(np.zeros(size // 4, np.uint32), f"{kind} scratch")
                                      if zeroed else self.device.buffer(size, f"{kind} scratch"))
        return buf

    def _check(self, op: str, what: str, buf, need: int) -> None:
        if buf.nbytes < need:
            raise GemforgeError(f"{op}: buffer '{what}' has {buf.nbytes} bytes, the call needs {need}",
                                "allocate it for the largest T (and bucket) the caller uses")

    def _rope_table(self, D: int, base: float, scale: float) -> Buffer:
        key = ("rope-table", D, float(base), float(scale))
        if key not in self._cache:
            self._cache[key] = self.device.upload(rope_inv_freq(D, base, scale), f"rope inv_freq D={D} base={base:g}")
        return self._cache[key]

    def _dispatch_1d(self, rec: Recording, prog, bufs, push, n: int) -> None:
        wg = prog.artifact.workgroup_size[0]
        rec.dispatch(prog, bufs, push, groups_2d(max(1, cdiv(n, wg))))

    # -- RoPE and KV cache ------------------------------------------------------------------
    def rope(self, rec: Recording, x, ctrl, T: int, heads: int, D: int, base: float, scale: float) -> None:
        """NEOX RoPE in place on x [T, heads, D]; row t is at position ctrl[0] + t."""
        if D % 2 or D <= 0:
            raise GemforgeError(f"rope: head dim {D} must be even and positive")
        if scale <= 0:
            raise GemforgeError(f"rope: scale {scale} must be positive (1.0 for no scaling)")
        self._check("rope", "x", x, T * heads * D * 4)
        prog = self.program("rope")
        self._dispatch_1d(rec, prog, {"x": x, "freqs": self._rope_table(D, base, scale), "ctrl": ctrl},
                          {"T": T, "heads": heads, "npairs": D // 2}, T * heads * (D // 2))

    def kv_write(self, rec: Recording, src, cache, ctrl, T: int, C: int, row: int) -> None:
        """cache[(ctrl[0] + t) mod C, :] = src[t, :] for t < T; a row is ``row`` floats (n_kv_heads * head_dim)."""
        if row % 4:
            raise GemforgeError(f"kv_write: row of {row} floats is not a multiple of 4", "rows are n_kv_heads * head_dim")
        if not 0 < T <= C:
            raise GemforgeError(f"kv_write: {T} rows do not fit a {C}-slot cache without overwriting each other",
                                "write at most C rows per step")
        self._check("kv_write", "src", src, T * row * 4)
        self._check("kv_write", "cache", cache, C * row * 4)
        prog = self.program("kv_write")
        self._dispatch_1d(rec, prog, {"src": src, "cache": cache, "ctrl": ctrl},
                          {"T": T, "C": C, "row4": row // 4}, T * row // 4)

    # -- attention --------------------------------------------------------------------------
    def attention(self, rec: Recording, q, kcache, vcache, out, ctrl, T: int, Hq: int, Hkv: int, D: int, C: int,
                  window: int, scale: float, splits: int | None = None) -> None:
        """out [T, Hq, D] = softmax(q k^T * scale) v over the ring-buffer caches [C, Hkv, D] (COMMON.md rules).

        Prefill (T > 1) runs attention_coop (tensor cores, fp16 q/k/v) where attention_choice allows,
        else the portable kernel. ``splits`` (keys cut into at most that many pieces; decode: combined
        by the last workgroup of each head, prefill: by an attention_merge pass) is chosen from the
        shape when None; tests force it to exercise both paths."""
        if Hkv <= 0 or Hq % Hkv:
            raise GemforgeError(f"attention: {Hq} query heads are not a multiple of {Hkv} kv heads")
        if not 0 < T <= 65535 or C <= 0 or window < 0:
            raise GemforgeError(f"attention: bad shape T={T}, C={C}, window={window}")
        for name, b, n in (("q", q, T * Hq * D), ("out", out, T * Hq * D), ("kcache", kcache, C * Hkv * D),
                           ("vcache", vcache, C * Hkv * D)):
            self._check("attention", name, b, n * 4)
        mode = "decode" if T == 1 else "prefill"
        op = "attention" if mode == "decode" else self.attention_choice(D)[0]
        prog = self.program(op, mode=mode, head_dim=D) if op == "attention" else self.program(op, head_dim=D)
        self._attend(rec, prog, mode, {"q": q, "kcache": kcache, "vcache": vcache, "y": out, "ctrl": ctrl},
                     {}, T, Hq, Hkv, D, C, window, scale, splits)

    def attention_qk(self, rec: Recording, qkv, q_norm, k_norm, ctrl, kcache, vcache, out, Hq: int, Hkv: int,
                     D: int, C: int, window: int, scale: float, eps: float, rope_base: float, rope_scale: float,
                     splits: int | None = None) -> None:
        """Decode (one row): qk_rope then attention in one dispatch (attention_qk.yaml). qkv [(Hq + 2 Hkv) D]
        is the q/k/v product's row; the new k and v go into the caches at slot ctrl[0] mod C, and out
        [Hq, D] gets the attention of the normed, roped q over every key up to and including them."""
        if split_input(qkv)[1] > 1:
            raise GemforgeError("attention_qk: qkv is a product's split-K partials; it reads one summed row",
                                "call linear without defer_sum (decode products do not split K)")
        if Hkv <= 0 or Hq % Hkv:
            raise GemforgeError(f"attention_qk: {Hq} query heads are not a multiple of {Hkv} kv heads")
        if C <= 0 or window < 0 or D % 8:
            raise GemforgeError(f"attention_qk: bad shape C={C}, window={window}, head dim {D}")
        for name, b, n in (("qkv", qkv, (Hq + 2 * Hkv) * D), ("out", out, Hq * D), ("kcache", kcache, C * Hkv * D),
                           ("vcache", vcache, C * Hkv * D), ("q_norm", q_norm, D), ("k_norm", k_norm, D)):
            self._check("attention_qk", name, b, n * 4)
        prog = self.program("attention_qk", head_dim=D)
        bufs = {"qkv": qkv, "qw": q_norm, "kw": k_norm, "freqs": self._rope_table(D, rope_base, rope_scale),
                "kcache": kcache, "vcache": vcache, "y": out, "ctrl": ctrl}
        self._attend(rec, prog, "decode", bufs, {"eps": float(eps)}, 1, Hq, Hkv, D, C, window, scale, splits)

    def _attend(self, rec: Recording, prog, mode: str, bufs: dict, push_extra: dict, T: int, Hq: int, Hkv: int,
                D: int, C: int, window: int, scale: float, splits: int | None) -> None:
        """The dispatch of an attention kernel (attention, attention_coop, attention_qk): splits, partials,
        the decode counters or the prefill merge pass."""
        op = prog.artifact.op
        vals = prog.artifact.values
        if op != "attention_coop":
            rows, keys, target = vals[f"{mode}_rows"], vals[f"{mode}_keys"], self.SPLIT_TARGET_GROUPS
        else:
            rows, keys, target = vals["rows"], vals["keys"], vals["split_groups"]
        tiles = cdiv(T * (Hq // Hkv), rows)
        if splits is None:
            visible = C if window == 0 else min(C, window + T - 1)
            splits = max(1, min(cdiv(target, tiles * Hkv), cdiv(visible, keys)))
        if not 0 < splits <= 65535:
            raise GemforgeError(f"attention: splits={splits} is outside 1..65535")
        part_bytes = splits * T * Hq * (D + 2) * 4 if splits > 1 else 16
        if part_bytes > self.device.info.max_buffer_bytes:
            raise GemforgeError(f"attention: {splits} splits of {T}x{Hq} rows need {part_bytes} bytes of partials, "
                                f"more than one buffer on {self.device.info.name}", "use fewer splits")
        part = self._scratch("attention", part_bytes)
        push = {"T": T, "Hq": Hq, "Hkv": Hkv, "C": C, "window": window, "scale": float(scale) * LOG2E,
                "splits": splits, **push_extra}
        bufs = {**bufs, "part": part}
        if mode == "decode":     # the last split of each head combines the partials (no merge pass); it
            bufs["count"] = self._scratch("attention counters", 4 * tiles * Hkv, zeroed=True)  # re-zeroes its counter
        rec.dispatch(prog, bufs, push, (tiles, Hkv, splits))
        if mode == "prefill" and splits > 1:
            merge = self.program("attention_merge", head_dim=D)
            rec.dispatch(merge, {"part": part, "y": bufs["y"]}, {"rows": T * Hq, "splits": splits},
                         groups_2d(T * Hq))

    def attention_choice(self, D: int) -> tuple[str, str]:
        """(op, why) of prefill attention at head dim ``D``: 'attention_coop' (cooperative matrix: fp16
        q, k, v and probabilities, fp32 sums) where the device and the build have it, else the
        portable 'attention' (fp32 throughout)."""
        if self.portable_only or self.portable_attention:
            return "attention", "portable attention (cooperative matrix turned off)"
        return self.coop_choice("attention_coop", "attention", "attention",
                                "cooperative-matrix attention (fp16 q, k, v and probabilities, fp32 sums)", head_dim=D)

    # -- elementwise ------------------------------------------------------------------------
    def geglu(self, rec: Recording, gu, out, T: int, F: int, f16: bool = False) -> None:
        """out [T, F] = gelu_tanh(gu[:, :F]) * gu[:, F:] (gu [T, 2F]: gate columns, then up; or the Split
        partials of the product that makes it). ``f16``: out in fp16 (round to nearest even), the
        input rows of the cooperative-matrix matmul (linear's x16); F must be a multiple of 8."""
        if f16 and F % 8:
            raise GemforgeError(f"geglu: an fp16 output needs F % 8 == 0 (F = {F})", "use the fp32 output")
        gu, splits, pstride = split_input(gu)
        self._check("geglu", "gu", gu, splits * T * 2 * F * 4)
        self._check("geglu", "out", out, T * F * (2 if f16 else 4))
        prog = self.program("geglu", out="f16" if f16 else "f32", input="split" if splits > 1 else "plain")
        self._dispatch_1d(rec, prog, {"gu": gu, "y": out}, {"T": T, "F": F, "splits": splits, "pstride": pstride},
                          T * F)

    def add(self, rec: Recording, a, b, out, n: int) -> None:
        """out = a + b over n floats."""
        for name, buf in (("a", a), ("b", b), ("out", out)):
            self._check("add", name, buf, n * 4)
        self._dispatch_1d(rec, self.program("add"), {"a": a, "b": b, "y": out}, {"n": n}, n)

    # -- sampling helpers -------------------------------------------------------------------
    def _levels(self, rec: Recording, op: str, logits, V: int, per_group: int, keep: int,
                final_vals, final_idx, extra_push: dict) -> None:
        """Chain one-workgroup-per-chunk levels of ``op`` until one group remains.

        Each level turns n (value, index) entries into ceil(n / per_group) * keep; the last writes
        ``final_vals`` / ``final_idx`` (None: a scratch slot)."""
        counts, n = [], V
        while True:
            groups = cdiv(n, per_group)
            counts.append(groups * keep)
            if groups == 1:
                break
            n = groups * keep           # < n / 2: the specs' constraints keep keep <= per_group / 4
        offs, total = [], 0
        for c in counts:                  # vals then idx for every level, each aligned
            offs.append((total, total + cdiv(c * 4, SCRATCH_ALIGN) * SCRATCH_ALIGN))
            total += 2 * cdiv(c * 4, SCRATCH_ALIGN) * SCRATCH_ALIGN
        scratch = self._scratch(op, total)
        prog = self.program(op)
        in_vals, in_idx, n = logits, None, V
        for level, (c, (ov, oi)) in enumerate(zip(counts, offs)):
            last = level == len(counts) - 1
            out_vals = final_vals if last and final_vals is not None else View(scratch, ov, c * 4)
            out_idx = final_idx if last else View(scratch, oi, c * 4)
            # the first level reads no indices (has_idx = 0): any buffer fills the binding
            bufs = {"in_vals": in_vals, "in_idx": in_idx if in_idx is not None else View(scratch, oi, c * 4),
                    "out_vals": out_vals, "out_idx": out_idx}
            rec.dispatch(prog, bufs, {"n": n, "has_idx": int(in_idx is not None), **extra_push},
                         (cdiv(n, per_group), 1, 1))
            in_vals, in_idx, n = out_vals, out_idx, c

    def argmax(self, rec: Recording, logits, out_idx, V: int) -> None:
        """out_idx[0] = the index of the largest of logits[0:V] (the lowest among equals)."""
        if V <= 0:
            raise GemforgeError(f"argmax: V={V} must be positive")
        self._check("argmax", "logits", logits, V * 4)
        self._check("argmax", "out_idx", out_idx, 4)
        vals = self.program("argmax").artifact.values
        self._levels(rec, "argmax", logits, V, vals["wg_size"] * vals["items"], 1, None, out_idx, {})

    def topk(self, rec: Recording, logits, vals, idx, V: int, k: int) -> None:
        """vals[0:k], idx[0:k] = the k largest of logits[0:V], descending (lower index first among equals)."""
        p = self.program("topk").artifact.values
        if not 0 < k <= min(p["max_k"], V):
            raise GemforgeError(f"topk: k={k} is outside 1..{min(p['max_k'], V)} (V={V})",
                                f"the GPU top-k gives at most {p['max_k']} candidates")
        self._check("topk", "logits", logits, V * 4)
        self._check("topk", "vals", vals, k * 4)
        self._check("topk", "idx", idx, k * 4)
        self._levels(rec, "topk", logits, V, p["chunk"], k, vals, idx, {"k": k})
