"""Gemma 3 on a Vulkan device, written to read like the math in GEMMA3.md.

    x   = embed(ids) * sqrt(hidden)
    per layer:  h   = x + post_attn_norm(W_o attn(rope(q_norm(W_q n)), rope(k_norm(W_k n)), W_v n))   n = input_norm(x)
                out = h + post_ffn_norm(W_down geglu(W_gate h', W_up h'))                               h' = pre_ffn_norm(h)
    logits = embed.T final_norm(x)

The residual stream and all norms are fp32; weights are in the chosen format.  Prefill
runs in chunks of at most 256 rows (the kernels pick the smallest bucket that fits);
a decode step is one command buffer, recorded once and submitted once per token,
with the position and the token id in small host-visible buffers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .config import ModelConfig
from .errors import GemforgeError, ModelError
from .kernels import Kernels, Weight, cdiv, concat_packed, upload_packed_weight
from .sampling import Sampler, SamplingParams
from .vulkan import Buffer, Device, Recording, View

MAX_CHUNK = 256          # the largest prefill bucket
LOGIT_ROWS = 16          # rows of full logits per submit in Model.logits (the smallest matmul bucket)
BURST_MAX = 32           # the most greedy decode steps one submit runs (Engine.decode_burst)
DEFAULT_CONTEXT = 8192   # the KV cache length unless --context says otherwise (up to the model's limit)


def check_burst(n: int, name: str = "burst") -> None:
    """A one-line error unless 1 <= n <= BURST_MAX (``name`` says what n is: '--burst', ...)."""
    if not 1 <= n <= BURST_MAX:
        raise ModelError(f"{name} {n} is outside 1..{BURST_MAX}", f"use --burst 1 to {BURST_MAX} (1: wait for every token)")


@dataclass
class Layer:
    attn_norm: Buffer
    wqkv: Weight            # q rows, then k rows, then v rows: one [(Hq + 2 Hkv) D, H] matrix
    wo: Weight
    q_norm: Buffer
    k_norm: Buffer
    post_attn_norm: Buffer
    ffn_norm: Buffer
    w_gate_up: Weight       # gate rows then up rows: one [2F, H] matrix
    w_down: Weight
    post_ffn_norm: Buffer
    kcache: Buffer
    vcache: Buffer
    cache_len: int          # C: context for global layers, window + MAX_CHUNK for sliding ones
    window: int             # 0 for global layers
    rope_base: float
    rope_scale: float


@dataclass
class Stats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    finish_reason: str = ""
    steps_per_submit: int = 1       # greedy decode in bursts (Model.burst), else one step a submit

    @property
    def prefill_tok_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tok_s(self) -> float:
        # the first generated token comes from the prefill's logits; decode steps make the rest
        steps = max(0, self.generated_tokens - 1)
        return steps / self.decode_s if self.decode_s else 0.0


class Engine:
    """The model's weights, activations and KV cache on one device, and the recorded steps."""

    # Weight matrices go to the device in row parts of at most this many bytes. On the H200 one
    # bench/linear_probe.py run timed the 27B q8_0 output head (1.5 GB) at 3.4 TB/s in 256 MiB parts
    # against 0.7-0.8 TB/s in one buffer, but other runs were slow either way, and in `gemforge bench`
    # the 27B q8_0 decode moved only from 74.4 to 75.7 tok/s (two device calls): kept, as harmless
    # (a dispatch per part, ~6 us), not as a proven gain. `gemforge bench --weight-part-mb` for A/B.
    WEIGHT_PART_BYTES = 256 << 20

    def __init__(self, device: Device, kernels: Kernels, store, context: int, progress=None,
                 part_bytes: int | None = None):
        cfg: ModelConfig = store.config
        self.cfg, self.device, self.k = cfg, device, kernels
        self.context = context
        H = cfg.hidden
        self.fmt = store.fmt

        def mat(*names):
            """One device matrix: the named GGUF matrices stacked by rows (one dispatch reads them all)."""
            mats = [store.matrix(n) for n in names]
            words, N, K = mats[0] if len(mats) == 1 else concat_packed(mats, self.fmt)
            return upload_packed_weight(device, words, self.fmt, N, K, "+".join(names),
                                        max_part_bytes=part_bytes or self.WEIGHT_PART_BYTES)

        def vec(name):
            return device.upload(np.asarray(store.vector(name), np.float32), name)

        self.embed = mat("token_embd.weight")
        self.out_norm = vec("output_norm.weight")
        self.layers: list[Layer] = []
        for i in range(cfg.layers):
            p = f"blk.{i}."
            glob = cfg.is_global(i)
            C = context if glob else min(context, cfg.window + MAX_CHUNK)
            kv_bytes = C * cfg.kv_dim * 4
            self.layers.append(Layer(
                attn_norm=vec(p + "attn_norm.weight"),
                wqkv=mat(p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"),
                wo=mat(p + "attn_output.weight"), q_norm=vec(p + "attn_q_norm.weight"),
                k_norm=vec(p + "attn_k_norm.weight"), post_attn_norm=vec(p + "post_attention_norm.weight"),
                ffn_norm=vec(p + "ffn_norm.weight"), w_gate_up=mat(p + "ffn_gate.weight", p + "ffn_up.weight"),
                w_down=mat(p + "ffn_down.weight"), post_ffn_norm=vec(p + "post_ffw_norm.weight"),
                kcache=device.buffer(kv_bytes, p + "kcache"), vcache=device.buffer(kv_bytes, p + "vcache"),
                cache_len=C, window=0 if glob else cfg.window,
                rope_base=cfg.rope_global_base if glob else cfg.rope_local_base,
                rope_scale=cfg.rope_global_scale if glob else 1.0))
            if progress:
                progress(i + 1, cfg.layers)
        T = MAX_CHUNK
        f32 = 4
        buf = device.buffer
        self.x = buf(T * H * f32, "x")
        self.h = buf(T * H * f32, "h")
        self.xn = buf(T * H * f32, "xn")
        self.xn16 = buf(T * cdiv(H, 8) * 8 * 2, "xn16")     # prefill: xn in fp16, the next product's x
        self.qkv = buf(T * (cfg.q_dim + 2 * cfg.kv_dim) * f32, "qkv")
        self.qn = buf(T * cfg.q_dim * f32, "qn")
        self.attn = buf(T * cfg.q_dim * f32, "attn")
        self.o = buf(T * H * f32, "o")
        self.gu = buf(T * 2 * cfg.ffn * f32, "gate_up")
        self.act = buf(T * cfg.ffn * f32, "act")
        self.act16 = buf(T * cfg.ffn * 2, "act16")      # prefill: geglu's fp16 output, the down product's x
        self.down = buf(T * H * f32, "down")
        self.ids = buf(T * 4, "ids", host=True)
        self.ctrl = buf(64, "ctrl", host=True)
        # decode bursts (decode_burst): step i reads its token from slot i of burst_ids and its position
        # from slot i of burst_ctrl; its argmax writes slot i + 1, the next step's token
        self._slot = max(256, device.info.min_storage_offset_alignment)
        self.burst_ids = buf((BURST_MAX + 1) * self._slot, "burst_ids", host=True)
        self.burst_ctrl = buf(BURST_MAX * self._slot, "burst_ctrl", host=True)
        self.logits = buf(cfg.vocab * f32, "logits")   # read back only by the full-logits sampling path
        self.rows_logits = buf(LOGIT_ROWS * cfg.vocab * f32, "rows_logits")
        self.out_idx = buf(64 * 4, "out_idx", host=True)
        self.topk_vals = buf(64 * 4, "topk_vals", host=True)
        self.pos = 0                      # tokens in the KV cache
        self._steps: dict[tuple, Recording] = {}
        self.embed_scale = float(np.float32(math.sqrt(H)))
        self.attn_scale = float(cfg.query_pre_attn_scalar) ** -0.5

    # -- recording ------------------------------------------------------------------------
    # Decode folds (T = 1). NORMS: where each closing residual add + next input norm (rmsnorm add_norm)
    # runs: 'before' the next product (matvec input addnorm: every workgroup recomputes it, for small
    # hidden sizes), 'after' the product before it (matvec out add_norm: its last workgroup, once),
    # 'separate' (a dispatch), 'auto' (before where both products are small, the 270M; else separate:
    # on the H200 the last workgroup's norms cost more than the dispatch they save -- 27B q8_0 decode
    # 68.9 tok/s after vs 75.7 separate; 1B 387 vs 435). GEGLU: 'after' the gate/up product (matvec out
    # geglu, where gate_up is one weight part), 'before' the down product (matvec input geglu: every
    # workgroup recomputes gelu, for small matrices only), 'separate', 'auto' (before with norms
    # before, else after where it fits, else separate). bench --norms/--geglu: A/B runs.
    # H200, bench/linear_probe.py: 27B q8_0 down 70.6 us with input geglu vs 42.8 us plain.
    GEGLU_BEFORE_MAX_BYTES = 4 << 20
    # decode: qk_rope folded into attention (attention_qk, one dispatch a layer) or 'separate' (A/B runs:
    # set_decode_qk, bench --decode-qk)
    decode_qk = "fused"
    NORMS = "auto"
    GEGLU = "auto"
    FOLDS = ("auto", "before", "after", "separate")

    def decode_folds(self) -> tuple[str, str]:
        """(norms, geglu): where the decode step's add_norm pairs and GeGLUs run (NORMS/GEGLU resolved)."""
        k, L = self.k, self.layers[0]
        for name, v in (("NORMS", self.NORMS), ("GEGLU", self.GEGLU)):
            if v not in self.FOLDS:
                raise GemforgeError(f"Engine.{name} = {v!r}", f"use one of {', '.join(self.FOLDS)}")
        fits = {"before": all(k.addnorm_fits(W) for W in (L.wqkv, L.w_gate_up)),
                "after": all(k.norm_after_fits(W) for W in (L.wo, L.w_down)), "separate": True}
        norms = self.NORMS
        if norms == "auto":
            small = all(k.is_small(W) for W in (L.wqkv, L.w_gate_up))
            norms = "before" if fits["before"] and small else "separate"
        if not fits[norms]:
            raise GemforgeError(f"decode norms '{norms}' do not fit this model's shapes or kernel build",
                                "use --norms auto")
        gfits = {"after": norms != "before" and k.geglu_after_fits(L.w_gate_up),
                 "before": L.w_down.nbytes <= self.GEGLU_BEFORE_MAX_BYTES, "separate": True}
        geglu = self.GEGLU
        if geglu == "auto":
            geglu = "before" if norms == "before" and gfits["before"] else "after" if gfits["after"] else "separate"
        if not gfits[geglu]:
            raise GemforgeError(f"decode geglu '{geglu}' does not fit this model's shapes, kernel build or "
                                f"norms '{norms}'", "use --geglu auto")
        return norms, geglu

    def set_folds(self, norms: str = "auto", geglu: str = "auto") -> tuple[str, str]:
        """Choose the decode folds (see NORMS/GEGLU); recorded steps are dropped. Returns decode_folds()."""
        old = self.NORMS, self.GEGLU
        self.NORMS, self.GEGLU = norms, geglu
        try:
            folds = self.decode_folds()
        except GemforgeError:
            self.NORMS, self.GEGLU = old
            raise
        self.forget_steps()
        return folds

    def set_decode_qk(self, how: str) -> None:
        """Where the decode step's q/k norm, RoPE and KV write run (decode_qk); recorded steps are dropped."""
        if how not in ("fused", "separate"):
            raise GemforgeError(f"decode q/k: {how!r}", "use fused or separate")
        self.decode_qk = how
        self.forget_steps()

    def forget_steps(self) -> None:
        """Drop the recorded steps (they bind today's buffers and choices): the next run records anew."""
        for rec in self._steps.values():
            rec.destroy()
        self._steps.clear()

    def _row(self, b: Buffer, row: int, width: int, count: int = 1) -> View:
        """Rows [row, row + count) of a [*, width] fp32 buffer, as a bindable view."""
        return View(b, row * width * 4, count * width * 4)

    def _layers(self, rec: Recording, T: int, ctrl=None) -> bool:
        """Every decoder layer for T rows: x (the residual stream) in, x out. True when xn also holds
        the output norm of x (decode with norms folded after the products: the head needs no norm).

        Each sub-block's closing residual add is fused with the next sub-block's input norm
        (rmsnorm add_norm), so xn always holds the normed input of what comes next; in decode that
        pair and the GeGLU are folded into a neighbouring matrix-vector product (decode_folds).
        ``ctrl``: where the position is read (default the engine's ctrl; a decode burst's step slot)."""
        cfg, k = self.cfg, self.k
        ctrl = self.ctrl if ctrl is None else ctrl
        H, D, Hq, Hkv = cfg.hidden, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads
        norms, geglu = self.decode_folds() if T == 1 else ("separate", "separate")
        pending = None      # an add_norm (x, residual, w, w2, h) left for the next product to fold in
        xn16 = False        # xn16 (not xn) holds the normed input of the next product (prefill on matmul_coop)

        def product_norm(W, x, y, residual, w, w2, h, act=None, x16=None, nxt=None):
            """y = W @ x (act: linear's), then h = residual + norm(y) * w and xn = norm(h) * w2. No kernel
            folds both an input geglu and the norms after: with act, the norms stay before or separate.
            nxt: the product that reads xn next; where it runs on matmul_coop, xn goes to xn16 in fp16."""
            nonlocal pending, xn16
            if norms == "after" and act is None:
                k.linear_norm_after(rec, W, x, y, residual, w, w2, h, self.xn, cfg.eps)
                return
            y = k.linear(rec, W, x, y, T, act=act, defer_sum=True, x16=x16)
            if norms == "before":
                pending = (y, residual, w, w2, h)
            else:
                xn16 = T > 1 and nxt is not None and k.takes_f16(nxt, T)
                k.rmsnorm(rec, y, w, h, T, H, cfg.eps, residual=residual, w2=w2, z=self.xn16 if xn16 else self.xn,
                          z16=xn16)

        def linear_xn(W, y):
            """y = W @ xn, where xn is the pending add_norm's output when one is pending. Returns what
            holds y (prefill: maybe the split-K partials, summed by the op that reads them)."""
            nonlocal pending, xn16
            if pending:
                k.linear_addnorm(rec, W, *pending, y, cfg.eps)
                pending = None
                return y
            x16, xn16 = (self.xn16 if xn16 else None), False
            return k.linear(rec, W, self.xn, y, T, defer_sum=True, x16=x16)

        k.rmsnorm(rec, self.x, self.layers[0].attn_norm, self.xn, T, H, cfg.eps)
        last = len(self.layers) - 1
        f16_act = cfg.ffn % 8 == 0 and k.takes_f16(self.layers[0].w_down, T)   # prefill on matmul_coop
        for i, L in enumerate(self.layers):
            qkv = linear_xn(L.wqkv, self.qkv)
            if T == 1 and self.decode_qk == "fused":
                # decode: q/k norm, RoPE, the KV write and attention in one dispatch
                k.attention_qk(rec, qkv, L.q_norm, L.k_norm, ctrl, L.kcache, L.vcache, self.attn, Hq, Hkv, D,
                               L.cache_len, L.window, self.attn_scale, cfg.eps, L.rope_base, L.rope_scale)
            else:
                # q_norm/k_norm per head, RoPE, and k, v into the cache: one dispatch; then attention
                k.qk_rope(rec, qkv, L.q_norm, L.k_norm, ctrl, self.qn, L.kcache, L.vcache, T, Hq, Hkv, D,
                          L.cache_len, cfg.eps, L.rope_base, L.rope_scale)
                k.attention(rec, self.qn, L.kcache, L.vcache, self.attn, ctrl, T, Hq, Hkv, D, L.cache_len,
                            L.window, self.attn_scale)
            # h = x + post_attn_norm(o); xn = ffn_norm(h)
            product_norm(L.wo, self.attn, self.o, self.x, L.post_attn_norm, L.ffn_norm, self.h,
                         nxt=L.w_gate_up if geglu == "separate" else None)
            act = "geglu" if geglu == "before" else None      # the down product's input geglu
            down16 = None
            if geglu == "after":
                k.linear_geglu_after(rec, L.w_gate_up, self.xn, self.act)
                down_in = self.act
            else:
                gu = linear_xn(L.w_gate_up, self.gu)
                down_in = self.gu if act else self.act
                if geglu == "separate" and f16_act:        # straight into the down product's fp16 x
                    k.geglu(rec, gu, self.act16, T, cfg.ffn, f16=True)
                    down16 = self.act16
                elif geglu == "separate":
                    k.geglu(rec, gu, self.act, T, cfg.ffn)
            # x = h + post_ffn_norm(down); xn = the next layer's attn_norm(x) (after the last layer,
            # with norms after: the output norm)
            if i < last:
                product_norm(L.w_down, down_in, self.down, self.h, L.post_ffn_norm, self.layers[i + 1].attn_norm,
                             self.x, act, down16, nxt=self.layers[i + 1].wqkv)
            elif norms == "after" and act is None:     # the output norm, folded like the others
                product_norm(L.w_down, down_in, self.down, self.h, L.post_ffn_norm, self.out_norm, self.x)
                return True
            else:
                down = k.linear(rec, L.w_down, down_in, self.down, T, act=act, defer_sum=True, x16=down16)
                k.rmsnorm(rec, down, L.post_ffn_norm, self.x, T, H, cfg.eps, residual=self.h)
        return False

    def record_step(self, T: int, head: str, topk: int = 0, timestamps: bool = False) -> Recording:
        """A new recording of the step for T rows. head: 'argmax' | 'topk' | 'logits' (last row) | 'none'."""
        rec = self.device.record(timestamps=timestamps, label=f"step T={T} {head}")
        self._record_tokens(rec, T, head, topk, self.ids, self.ctrl, self.out_idx)
        return rec.finish()

    def _record_tokens(self, rec: Recording, T: int, head: str, topk: int, ids, ctrl, out_idx) -> None:
        """One step into ``rec``: embed the T tokens in ``ids``, every layer at the position in ``ctrl``,
        then the head of the last row (argmax or top-k indices into ``out_idx``)."""
        cfg, k, H = self.cfg, self.k, self.cfg.hidden
        k.embed(rec, self.embed, ids, self.x, T, self.embed_scale)
        normed = self._layers(rec, T, ctrl)
        if head != "none":
            if not normed:
                k.rmsnorm(rec, self._row(self.x, T - 1, H), self.out_norm, self.xn, 1, H, cfg.eps)
            k.linear(rec, self.embed, self.xn, self.logits, 1)
            if head == "argmax":
                k.argmax(rec, self.logits, out_idx, cfg.vocab)
            elif head == "topk":
                k.topk(rec, self.logits, self.topk_vals, out_idx, cfg.vocab, topk)

    def record_burst(self, n: int, timestamps: bool = False) -> Recording:
        """A new recording of n greedy decode steps back to back: step i embeds the token in slot i of
        burst_ids, runs every layer at the position in slot i of burst_ctrl, and writes its argmax to
        slot i + 1 -- the next step's token, with no trip through the host (decode_burst)."""
        check_burst(n, "decode burst of")
        S = self._slot
        rec = self.device.record(timestamps=timestamps, label=f"decode burst of {n}")
        for i in range(n):
            self._record_tokens(rec, 1, "argmax", 0, View(self.burst_ids, i * S, 4), View(self.burst_ctrl, i * S, 64),
                                View(self.burst_ids, (i + 1) * S, 4))
        return rec.finish()

    def decode_burst(self, token: int, n: int) -> list[int]:
        """n greedy decode steps in one submit, the first on ``token``: the GPU feeds each step's argmax
        to the next. Returns the n tokens produced; the KV cache then holds ``token`` and the first
        n - 1 of them (``pos`` advances by n; set it back to drop the tail after a stop). Decoding a
        token at a time pays a submit and a wait per token (H200: 270M 1,026 tok/s a token a submit, 1,071
        in bursts of 8); a burst pays them once."""
        self._check_room(n)
        key = ("burst", n)
        rec = self._steps.get(key)
        if rec is None:
            rec = self._steps[key] = self.record_burst(n)
        S = self._slot // 4
        ids = np.zeros((n + 1) * S, np.uint32)
        ids[0] = token
        ctrl = np.zeros(n * S, np.uint32)
        ctrl[::S] = self.pos + np.arange(n, dtype=np.uint32)
        self.burst_ids.write(ids)
        self.burst_ctrl.write(ctrl)
        rec.submit()
        self.pos += n
        return [int(t) for t in self.burst_ids.read(np.uint32, (n + 1) * S)[S::S]]

    def _step(self, T: int, head: str, topk: int = 0) -> Recording:
        """The recorded step for T rows, made once and reused (the decode step for every token)."""
        key = (T, head, topk)
        rec = self._steps.get(key)
        if rec is not None:
            return rec
        rec = self.record_step(T, head, topk)
        if len(self._steps) > 16:   # keep the decode step and a few prefill shapes
            for old in [x for x in self._steps if x[0] != 1][:4]:
                self._steps.pop(old).destroy()
        self._steps[key] = rec
        return rec

    def _check_room(self, n: int) -> None:
        """A one-line error unless n more tokens fit in the context."""
        if self.pos + n > self.context:
            raise ModelError(f"the context is full: {self.pos} + {n} tokens exceed the {self.context}-token context",
                             "start a new conversation or raise --context")

    def _run(self, ids: Sequence[int], head: str, topk: int = 0) -> None:
        T = len(ids)
        self._check_room(T)
        self.ids.write(np.asarray(ids, np.uint32))
        self.ctrl.write(np.asarray([self.pos], np.uint32))
        self._step(T, head, topk).submit()
        self.pos += T

    # -- public steps -------------------------------------------------------------------------
    def prefill(self, ids: Sequence[int], head: str = "argmax", topk: int = 0, chunk: int = MAX_CHUNK) -> None:
        """Run ``ids`` through the model from the current position, in chunks of ``chunk`` rows (<= 256);
        the kernels run each chunk in the smallest bucket that holds it."""
        if not 1 <= chunk <= MAX_CHUNK:
            raise GemforgeError(f"prefill chunk {chunk} outside 1..{MAX_CHUNK}")
        for s in range(0, len(ids), chunk):
            part = ids[s:s + chunk]
            last = s + chunk >= len(ids)
            self._run(part, head if last else "none", topk)

    def decode(self, token: int, head: str = "argmax", topk: int = 0) -> None:
        self._run([token], head, topk)

    def read_argmax(self) -> int:
        return int(self.out_idx.read(np.uint32, 1)[0])

    def read_topk(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.topk_vals.read(np.float32, k), self.out_idx.read(np.uint32, k)

    def read_logits(self) -> np.ndarray:
        return self.logits.read(np.float32, self.cfg.vocab)

    def all_logits(self, ids: Sequence[int], positions: Sequence[int] | None = None) -> np.ndarray:
        """Logits at ``positions`` (default: every position) of ``ids`` run from the current position:
        [len(positions), vocab]."""
        cfg, k = self.cfg, self.k
        H, V = cfg.hidden, cfg.vocab
        want = list(range(len(ids))) if positions is None else sorted(set(int(p) for p in positions))
        if want and not 0 <= want[0] <= want[-1] < len(ids):
            raise GemforgeError(f"positions must lie in 0..{len(ids) - 1}")
        rows: dict[int, np.ndarray] = {}
        for s in range(0, len(ids), MAX_CHUNK):
            part = ids[s:s + MAX_CHUNK]
            self._run(part, "none")
            mine = [p - s for p in want if s <= p < s + len(part)]
            # runs of consecutive rows, LOGIT_ROWS at a time
            i = 0
            while i < len(mine):
                r, n = mine[i], 1
                while i + n < len(mine) and n < LOGIT_ROWS and mine[i + n] == r + n:
                    n += 1
                rec = self.device.record(label="logits rows")
                k.rmsnorm(rec, self._row(self.x, r, H, n), self.out_norm, self.xn, n, H, cfg.eps)
                k.linear(rec, self.embed, self.xn, self.rows_logits, n)
                rec.submit()
                block = self.rows_logits.read(np.float32, n * V).reshape(n, V)
                for j in range(n):
                    rows[s + r + j] = block[j]
                rec.destroy()
                i += n
        return np.stack([rows[p] for p in want]) if want else np.empty((0, V), np.float32)

    def reset(self) -> None:
        self.pos = 0


def _stop_at(text: str, stops: Sequence[str]) -> int | None:
    idx = [text.find(s) for s in stops if s and s in text]
    return min(idx) if idx else None


class Model:
    """``Model.load(...)``, then ``generate(prompt)`` (yields text pieces) or ``logits(ids)``."""

    def __init__(self, engine: Engine, tokenizer, store, device: Device, placement: str = "vulkan"):
        self.engine, self.tokenizer, self.store, self.device = engine, tokenizer, store, device
        self.config: ModelConfig = engine.cfg
        self.placement = placement
        self.prefill_chunk = MAX_CHUNK    # rows per prefill submit (tests vary it)
        self.burst = 8                    # greedy decode steps per submit (Engine.decode_burst; 1: one a submit)
        self.stats = Stats()
        self._history: list[int] = []     # the tokens in the KV cache, for chat reuse
        self.last_tokens: list[int] = []

    @classmethod
    def load(cls, model: str | Path | None = None, weights: str = "q8_0", *, device: int | None = None,
             require_hardware: bool = False, context: int | None = None, placement: str = "vulkan",
             build_dir: Path | None = None, progress=None) -> "Model":
        from . import formats
        from .gguf_loader import load_weights
        from .model_store import default_model_path
        from .paths import cache_dir
        from .tokenizer import load_tokenizer
        formats.check_format(weights)
        if placement != "vulkan":
            from .placement import check_placement
            check_placement(placement)
        path = Path(model) if model else default_model_path()
        store = load_weights(path, weights)
        cfg = store.config
        ctx = context or min(cfg.context, DEFAULT_CONTEXT)
        if not 1 <= ctx <= cfg.context:
            raise ModelError(f"--context {ctx} is outside 1..{cfg.context}, the limit of {cfg.name}")
        tok = load_tokenizer(path)
        dev = Device(device, require_hardware, cache_dir=cache_dir())
        kern = Kernels(dev, build_dir)
        engine = Engine(dev, kern, store, ctx, progress)
        return cls(engine, tok, store, dev, placement)

    # -- information ----------------------------------------------------------------------
    @property
    def device_summary(self) -> str:
        i = self.device.info
        return f"{i.name} ({'hardware' if not i.is_software else 'software rasterizer'})"

    @property
    def prefill_matmul(self) -> str:
        """Which prefill matrix product this device runs, and why (cooperative matrix or portable)."""
        return self.engine.k.prefill_matmul(self.engine.fmt)

    @property
    def prefill_attention(self) -> str:
        """Which prefill attention kernel this device runs, and why (cooperative matrix or portable)."""
        return self.engine.k.attention_choice(self.config.head_dim)[1]

    @property
    def decode_products(self) -> str:
        """What the decode matrix-vector products compute with, and why (int8 x on the integer dot product
        or fp32 x)."""
        return self.engine.k.matvec_choice(self.engine.fmt)[1]

    def placement_summary(self) -> str:
        return f"placement {self.placement}: every op on {self.device_summary}"

    # -- API --------------------------------------------------------------------------------
    def logits(self, token_ids: Sequence[int], positions: Sequence[int] | None = None) -> np.ndarray:
        """Logits [len(positions), vocab] at ``positions`` (default all) of ``token_ids``, in a fresh context."""
        if not len(token_ids):
            raise ModelError("logits() needs at least one token")
        if len(token_ids) > self.engine.context:
            raise ModelError(f"{len(token_ids)} tokens exceed the {self.engine.context}-token context")
        self.engine.reset()
        self._history = []
        return self.engine.all_logits(list(token_ids), positions)

    def encode_chat(self, turns: Sequence[tuple[str, str]]) -> list[int]:
        """Gemma chat format for (role, text) turns, ending with the model's turn opener."""
        text = "".join(f"<start_of_turn>{'model' if r == 'model' else 'user'}\n{t}<end_of_turn>\n" for r, t in turns)
        return self.tokenizer.encode(text + "<start_of_turn>model\n", add_bos=True)

    def generate(self, prompt: str | Sequence[int], max_tokens: int = 256, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int | None = None,
                 stop: Sequence[str] = (), reuse_cache: bool = False) -> Iterator[str]:
        """Yield the generated text piece by piece.  ``reuse_cache``: ``prompt`` (token ids) continues
        the tokens already in the KV cache if it starts with them (chat), else the cache is reset."""
        params = SamplingParams(temperature, top_k, top_p, repetition_penalty, seed)
        if max_tokens < 1:
            raise ModelError(f"max_tokens must be >= 1, got {max_tokens}")
        check_burst(self.burst)
        ids = self.tokenizer.encode(prompt, add_bos=True) if isinstance(prompt, str) else [int(t) for t in prompt]
        if isinstance(prompt, str) and not prompt:
            raise ModelError("the prompt is empty", "give some text with --prompt")
        if not ids:
            raise ModelError("the prompt has no tokens")
        eng, cfg = self.engine, self.config
        if len(ids) >= eng.context:
            raise ModelError(f"the prompt has {len(ids)} tokens; the context holds {eng.context}",
                             f"shorten the prompt or raise --context (at most {cfg.context} for {cfg.name})")
        start = 0
        if reuse_cache and self._history and ids[:len(self._history)] == self._history:
            start = len(self._history)
        else:
            eng.reset()
            self._history = []
        sampler = Sampler(params)
        k = params.gpu_candidates
        head = "argmax" if params.greedy else ("topk" if k else "logits")
        stats = self.stats = Stats(prompt_tokens=len(ids) - start,
                                   steps_per_submit=self.burst if head == "argmax" else 1)
        self.last_tokens: list[int] = []   # the generated token ids (stop tokens excluded)
        stop_ids = {cfg.eos_id, cfg.end_of_turn_id}
        history = list(ids)

        def pick() -> int:
            if head == "argmax":
                return eng.read_argmax()
            if head == "topk":
                vals, idx = eng.read_topk(k)
                return sampler.pick(vals, idx, history)
            return sampler.pick(eng.read_logits(), None, history)

        t0 = time.perf_counter()
        new = ids[start:]
        if new:
            eng.prefill(new, head, k, self.prefill_chunk)
        else:   # everything is cached already: recompute the last token to get its logits
            eng.pos -= 1
            eng.decode(ids[-1], head, k)
        stats.prefill_s = time.perf_counter() - t0
        self._history = list(ids)   # exactly the tokens in the KV cache
        decoder = self.tokenizer.stream_decoder()
        text = ""
        emitted = 0
        hold = max((len(s) for s in stop), default=0)
        t1 = time.perf_counter()
        tok = pick()
        reason = "length"
        queued: list[int] = []          # tokens a decode burst produced beyond tok
        bursts = False
        try:
            while True:
                if tok in stop_ids:
                    reason = "stop"
                    break
                stats.generated_tokens += 1
                history.append(tok)
                self.last_tokens.append(tok)
                text += decoder.step(tok)
                cut = _stop_at(text, stop)
                if cut is not None:
                    if cut > emitted:
                        yield text[emitted:cut]
                    emitted = cut
                    reason = "stop"
                    break
                safe = len(text) - (hold - 1 if hold else 0)
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
                if stats.generated_tokens >= max_tokens:
                    break
                if len(self._history) + 1 > eng.context:     # the tokens in the cache (a burst runs ahead)
                    reason = "context"
                    break
                if queued:                  # the burst already decoded tok: its successor is next
                    self._history.append(tok)
                    tok = queued.pop(0)
                    continue
                n = min(self.burst, max_tokens - stats.generated_tokens, eng.context - eng.pos)
                if head == "argmax" and n > 1:
                    # greedy: n steps in one submit, the GPU feeding each argmax to the next step. The cache
                    # then holds tok and the first n - 1 new tokens; a stop inside the burst sets it back.
                    bursts = True
                    queued = eng.decode_burst(tok, n)
                    self._history.append(tok)
                    tok = queued.pop(0)
                    continue
                eng.decode(tok, head, k)
                self._history.append(tok)
                tok = pick()
        finally:    # also when the caller stops reading: drop what a burst decoded past the last token taken
            if bursts:
                eng.pos = len(self._history)
        text += decoder.flush()
        if reason != "stop" or _stop_at(text, stop) is None:
            if len(text) > emitted:
                yield text[emitted:]
        stats.decode_s = time.perf_counter() - t1
        stats.finish_reason = reason

    def close(self) -> None:
        self.device.close()
