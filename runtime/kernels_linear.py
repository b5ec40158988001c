"""Kernel calls of the matrix-product family and the embedding gather (a mixin of ``Kernels``).

``linear`` picks the decode matrix-vector kernel for one row and the prefill matrix-matrix
kernel of the smallest sequence bucket that holds T rows; ``embed`` gathers table rows.
Weights split in row parts get one dispatch per part: a part writes only its own outputs
(columns row0 .. row0 + rows of y, or the tokens whose id falls in its rows).
"""
from __future__ import annotations

from .errors import GemforgeError
from .kernels import Split, Weight, cdiv, groups_2d
from .vulkan import Buffer, Recording, View


def _label(prog, W: Weight) -> str:
    """A product dispatch's label for per-matrix profiles: the program and the matrix without its layer
    ('matvec_dot_q8_0@nvidia-h200 ffn_down [5376x21504]'; stacked matrices joined by '+')."""
    names = "+".join(n.split(".", 2)[2] if n.startswith("blk.") else n for n in W.name.split("+"))
    return f"{prog.name} {names.replace('.weight', '')} [{W.N}x{W.K}]"


def _need(what: str, b: Buffer | View, nbytes: int, hint: str) -> None:
    """A buffer too small for the call would be read or written out of bounds on the GPU: refuse it."""
    if b.nbytes < nbytes:
        name = b.buffer.name if isinstance(b, View) else b.name
        raise GemforgeError(f"{what}: buffer '{name}' holds {b.nbytes} bytes, {nbytes} needed", hint)


class LinearOps:
    portable_only = False       # True: never the cooperative-matrix matmul (tests of the portable one, A/B runs)
    # decode products of q8_0/q4_0 weights: 'int8' on the integer dot product (matvec_dot: x rounded to
    # int8 per chunk), 'float' (matvec: fp32 x), 'auto' (int8 where the device and the build have it)
    decode_dot = "auto"
    DOT_FORMATS = ("q8_0", "q4_0")
    # -- matrix products ------------------------------------------------------------------------
    def buckets(self, fmt: str) -> list[int]:
        """The prefill buckets built for weight format ``fmt``, ascending."""
        return sorted({a.axes["bucket"] for a in self.manifest.artifacts.values()
                       if a.op == "matmul" and a.axes.get("format") == fmt})

    def bucket(self, fmt: str, T: int) -> int | None:
        """The smallest prefill bucket built for ``fmt`` that holds T rows (None: none does)."""
        return next((b for b in self.buckets(fmt) if b >= T), None)

    def linear(self, rec: Recording, W: Weight, x, y, T: int, act: str | None = None,
               defer_sum: bool = False, x16=None) -> Buffer | Split:
        """y[T, W.N] = x[T, W.K] @ W.T in fp32 (T == 1: matvec; T <= 256: matmul of the bucket >= T).
        Returns what holds the product: y, or with ``defer_sum`` where the cooperative-matrix matmul
        split K over one weight part, a Split of its partials (y is not written) for the op that reads
        it to sum (rmsnorm, qk_rope, geglu: one dispatch and one pass over y fewer than split_sum).
        ``x16``: x already in fp16 rows of round_up(K, 8) (to_f16's output, or geglu's with f16), for
        the cooperative-matrix matmul only (takes_f16 says when it runs): no to_f16 pass.

        act='geglu' (decode only, T == 1): x holds [2 W.K], gate columns then up columns (geglu's
        input), and the product uses gelu_tanh(gate) * up as its vector -- the GeGLU folded into
        the down projection, one dispatch instead of two."""
        if T < 1:
            raise GemforgeError(f"linear '{W.name}': T = {T} rows; at least 1 is needed")
        if act not in (None, "geglu"):
            raise GemforgeError(f"linear '{W.name}': act={act!r} is not a known activation", "use act='geglu' or none")
        if act and T != 1:
            raise GemforgeError(f"linear '{W.name}': act={act!r} is fused only into the decode matrix-vector "
                                f"product (T = 1), not T = {T} rows",
                                f"for T > 1 run k.{act}(...) first, then linear without act")
        buckets = self.buckets(W.fmt) if T > 1 else []
        if T > 1 and (not buckets or T > buckets[-1]):
            raise GemforgeError(f"linear '{W.name}': T = {T} rows exceed the largest prefill bucket built for "
                                f"{W.fmt} ({buckets[-1] if buckets else 'none'})",
                                f"split the rows into chunks of at most {buckets[-1]}" if buckets else "run `make kernels`")
        _need(f"linear '{W.name}' x", x, 4 * T * W.K, f"x must hold [{T}, {W.K}] fp32")
        _need(f"linear '{W.name}' y", y, 4 * T * W.N, f"y must hold [{T}, {W.N}] fp32")
        if T == 1:
            if act:
                _need(f"linear '{W.name}' x", x, 4 * 2 * W.K, f"x must hold [{2 * W.K}] fp32 (gate, then up) for act={act!r}")
            self._matvec(rec, W, act or "plain", {"x": x, "y": y})
            return y
        bucket = self.bucket(W.fmt, T)
        prog = self.matmul_program(W.fmt, bucket, shape=self.shape_class(W))
        v = prog.artifact.values
        tm, tn = min(v["tile_m"], bucket), v["tile_n"]
        coop = prog.artifact.op == "matmul_coop"
        if x16 is not None and not coop:
            raise GemforgeError(f"linear '{W.name}': x16 given, but {prog.name} reads fp32 x",
                                "pass x16 only where takes_f16(W, T) is true")
        if x16 is not None:
            _need(f"linear '{W.name}' x16", x16, 2 * T * cdiv(W.K, 8) * 8, f"x16 must hold [{T}, {cdiv(W.K, 8) * 8}] fp16")
            xh = x16
        elif coop:                                 # its x: fp16 rows padded to 8 values (matmul_coop.yaml)
            xh = self._scratch("matmul-x16", 2 * T * cdiv(W.K, 8) * 8)
            self.to_f16(rec, x, xh, T, W.K)
        for p in W.parts:
            push = {"T": T, "K": W.K, "rows": p.rows, "row0": p.row0, "ldy": W.N}
            tiles = cdiv(p.rows, tn) * cdiv(T, tm)
            if not coop:
                rec.dispatch(prog, {"w": p.buffer, "x": x, "y": y}, push, (cdiv(p.rows, tn), cdiv(T, tm)),
                             label=_label(prog, W))
                continue
            splits, kchunk = self.k_splits(tiles, W.K, v["tile_k"], T, p.rows,
                                           v.get("resident_groups", 0), v.get("split_step_bytes", 0))
            part = self._scratch("matmul-split", 4 * splits * T * p.rows) if splits > 1 else y
            grid = (cdiv(p.rows, tn), cdiv(T, tm), splits)
            if v.get("raster") == "m":           # row tiles of x along grid x (see matmul_coop.yaml)
                grid = (grid[1], grid[0], splits)
            rec.dispatch(prog, {"w": p.buffer, "x": xh, "y": y, "part": part}, {**push, "kchunk": kchunk}, grid,
                         label=_label(prog, W))
            if splits > 1 and defer_sum and len(W.parts) == 1:
                return Split(View(part, 0, 4 * splits * T * p.rows), splits, T * p.rows)
            if splits > 1:
                self.split_sum(rec, part, y, T, p.rows, p.row0, W.N, splits)
        return y

    def takes_f16(self, W: Weight, T: int) -> bool:
        """Whether linear of W at T rows runs the cooperative-matrix matmul (which reads x in fp16, so a
        producer that writes fp16 saves it the to_f16 pass: linear's x16)."""
        bucket = self.bucket(W.fmt, T) if T > 1 else None
        return bucket is not None and self.matmul_choice(W.fmt, bucket)[0] == "matmul_coop"

    def split_sum(self, rec: Recording, part, y, T: int, rows: int, row0: int, ldy: int, splits: int) -> None:
        """y[m, row0 + n] = sum over s in order of part[s, m, n] (part [splits, T, rows] fp32), m < T, n < rows."""
        if min(T, rows, splits) < 1 or row0 + rows > ldy:
            raise GemforgeError(f"split_sum: T={T}, rows={rows}, splits={splits}, row0={row0}, ldy={ldy}",
                                "T, rows and splits must be positive and row0 + rows <= ldy")
        _need("split_sum part", part, 4 * splits * T * rows, f"part must hold [{splits}, {T}, {rows}] fp32")
        _need("split_sum y", y, 4 * ((T - 1) * ldy + row0 + rows), f"y must hold [{T}, {ldy}] fp32")
        self._dispatch_1d(rec, self.program("split_sum"), {"part": part, "y": y},
                          {"T": T, "rows": rows, "row0": row0, "ldy": ldy, "splits": splits},
                          T * rows // 4 if rows % 4 == 0 else T * rows)    # 4 outputs an invocation (split_sum.yaml)

    def to_f16(self, rec: Recording, x: Buffer, y: Buffer, T: int, K: int) -> int:
        """y [T, ldx] fp16 = x [T, K] fp32 rounded to nearest even, each row zero-padded to ldx =
        round_up(K, 8) values (the input of the cooperative-matrix matmul); returns ldx."""
        if T < 1 or K < 1:
            raise GemforgeError(f"to_f16: T = {T}, K = {K}; both must be at least 1")
        ldx = cdiv(K, 8) * 8
        _need("to_f16 x", x, 4 * T * K, f"x must hold [{T}, {K}] fp32")
        _need("to_f16 y", y, 2 * T * ldx, f"y must hold [{T}, {ldx}] fp16")
        self._dispatch_1d(rec, self.program("to_f16"), {"x": x, "y": y}, {"T": T, "K": K, "ldy": ldx}, T * ldx // 8)
        return ldx

    def matvec_choice(self, fmt: str) -> tuple[str, str]:
        """(op, why) of the plain-input decode product of ``fmt`` weights: 'matvec_dot' (integer dot
        products on int8 x) or 'matvec' (fp32 x), per ``decode_dot``; why says which and, for matvec
        under 'auto', what matvec_dot lacks."""
        if self.decode_dot not in ("auto", "int8", "float"):
            raise GemforgeError(f"decode_dot = {self.decode_dot!r}", "use auto, int8 or float")
        key = ("matvec-choice", fmt, self.decode_dot)
        if key not in self._cache:
            if fmt not in self.DOT_FORMATS or self.decode_dot == "float":
                out = ("matvec", "fp32 x" + ("" if fmt in self.DOT_FORMATS else f" ({fmt} has no integer-dot kernel)"))
            else:
                arts = [a for a in self.manifest.artifacts.values() if a.op == "matvec_dot" and a.axes.get("format") == fmt]
                missing = sorted(set(arts[0].extra.get("requires", ())) - self.device.info.features) if arts else []
                if arts and not missing:
                    out = ("matvec_dot", "int8 x on the integer dot product")
                else:
                    why = (f"{self.device.info.name} lacks {', '.join(missing)}" if arts
                           else "matvec_dot kernels not built: run `make kernels`")
                    if self.decode_dot == "int8":
                        raise GemforgeError(f"decode products on the integer dot product: {why}",
                                            "use decode_dot 'auto' or 'float' (bench --decode-dot)")
                    out = ("matvec", f"fp32 x ({why})")
            self._cache[key] = out
        return self._cache[key]

    def _matvec(self, rec: Recording, W: Weight, input: str, bufs: dict, eps: float = 0.0, out: str = "plain") -> None:
        """One matvec dispatch per part of W (the variant of ``input`` and ``out``), ``bufs`` besides the
        weight; plain input of q8_0/q4_0 weights on matvec_dot where matvec_choice says."""
        op = self.matvec_choice(W.fmt)[0] if input == "plain" and out in ("plain", "geglu") else "matvec"
        axes = {"format": W.fmt, "out": out} if op == "matvec_dot" else {"format": W.fmt, "input": input, "out": out}
        prog = self.program(op, shape=self.shape_class(W), **axes)
        R = prog.artifact.values["rows_per_wg"] * prog.artifact.values["row_groups"]
        if out == "geglu":      # R / 2 outputs per row group: gate and up rows in equal numbers
            grids = [groups_2d(cdiv(p.rows // 2, R // 2)) for p in W.parts]
        else:
            grids = [groups_2d(cdiv(p.rows, R)) for p in W.parts]
        total = sum(gx * gy for gx, gy in grids)
        for p, grid in zip(W.parts, grids):
            rec.dispatch(prog, {"w": p.buffer, **bufs},
                         {"K": W.K, "rows": p.rows, "row0": p.row0, "eps": eps, "N": W.N, "groups": total}, grid,
                         label=_label(prog, W))

    def addnorm_fits(self, W: Weight) -> bool:
        """Whether linear_addnorm takes W: a built matvec addnorm variant whose shared vector holds W.K."""
        try:
            prog = self.program("matvec", shape=self.shape_class(W), format=W.fmt, input="addnorm", out="plain")
        except GemforgeError:
            return False
        return W.K <= prog.artifact.values["norm_max_k"]

    def linear_addnorm(self, rec: Recording, W: Weight, x, residual, w, w2, h, y, eps: float) -> None:
        """Decode (one row): h = residual + rmsnorm(x) * w, then y = W @ (rmsnorm(h) * w2) -- the fused
        residual add and the next input norm (rmsnorm add_norm) folded into the matrix-vector product,
        one dispatch instead of two. Every workgroup computes the norms itself, so this is for small
        hidden sizes only (W.K <= the variant's norm_max_k; addnorm_fits says)."""
        prog = self.program("matvec", shape=self.shape_class(W), format=W.fmt, input="addnorm", out="plain")
        kmax = prog.artifact.values["norm_max_k"]
        if W.K > kmax:
            raise GemforgeError(f"linear_addnorm '{W.name}': K = {W.K} exceeds the kernel's norm_max_k = {kmax}",
                                "use k.rmsnorm(..., residual, w2, z) then k.linear for this size")
        for name, b in (("x", x), ("residual", residual), ("w", w), ("w2", w2), ("h", h)):
            _need(f"linear_addnorm '{W.name}' {name}", b, 4 * W.K, f"{name} must hold [{W.K}] fp32")
        _need(f"linear_addnorm '{W.name}' y", y, 4 * W.N, f"y must hold [{W.N}] fp32")
        self._matvec(rec, W, "addnorm", {"x": x, "y": y, "r": residual, "nw": w, "nw2": w2, "h": h}, eps)

    def norm_after_fits(self, W: Weight) -> bool:
        """Whether linear_norm_after takes W: a built matvec out add_norm variant that holds W.N outputs."""
        try:
            prog = self.program("matvec", shape=self.shape_class(W), format=W.fmt, input="plain", out="add_norm")
        except GemforgeError:
            return False
        return W.N <= prog.artifact.values["norm_max_n"]

    def linear_norm_after(self, rec: Recording, W: Weight, x, y, residual, w, w2, h, z, eps: float) -> None:
        """Decode (one row): y = W @ x, then h = residual + rmsnorm(y) * w and z = rmsnorm(h) * w2 -- the
        residual add and the next input norm (rmsnorm add_norm) computed once, by the product's last
        workgroup to finish, so the pair needs no dispatch of its own. W.N <= the variant's norm_max_n
        (norm_after_fits says)."""
        prog = self.program("matvec", shape=self.shape_class(W), format=W.fmt, input="plain", out="add_norm")
        nmax = prog.artifact.values["norm_max_n"]
        if W.N > nmax:
            raise GemforgeError(f"linear_norm_after '{W.name}': N = {W.N} exceeds the kernel's norm_max_n = {nmax}",
                                "use k.linear then k.rmsnorm(..., residual, w2, z) for this size")
        _need(f"linear_norm_after '{W.name}' x", x, 4 * W.K, f"x must hold [{W.K}] fp32")
        for name, b in (("y", y), ("residual", residual), ("w", w), ("w2", w2), ("h", h), ("z", z)):
            _need(f"linear_norm_after '{W.name}' {name}", b, 4 * W.N, f"{name} must hold [{W.N}] fp32")
        count = self._scratch("matvec counters", 4, zeroed=True)    # the last workgroup re-zeroes it
        self._matvec(rec, W, "plain", {"x": x, "y": y, "r": residual, "nw": w, "nw2": w2, "h": h, "z": z,
                                       "count": count}, eps, out="add_norm")

    def geglu_after_fits(self, W: Weight) -> bool:
        """Whether linear_geglu_after takes W: gate and up rows in one part, and the variant built."""
        try:
            self.program("matvec", shape=self.shape_class(W), format=W.fmt, input="plain", out="geglu")
            if self.matvec_choice(W.fmt)[0] == "matvec_dot":
                self.program("matvec_dot", shape=self.shape_class(W), format=W.fmt, out="geglu")
        except GemforgeError:
            return False
        return len(W.parts) == 1 and W.N % 2 == 0

    def linear_geglu_after(self, rec: Recording, W: Weight, x, y) -> None:
        """Decode (one row): y[f] = gelu_tanh(g[f]) * u[f] for [g; u] = W @ x, W holding the gate rows then
        the up rows (F = W.N / 2 each) in one part -- the GeGLU computed with the product, no dispatch or
        [2F] buffer of its own."""
        if not self.geglu_after_fits(W):
            raise GemforgeError(f"linear_geglu_after '{W.name}': needs an even N in one weight part "
                                f"(N = {W.N}, {len(W.parts)} parts) and a built matvec out geglu variant",
                                "use k.linear into a [2F] buffer, then k.geglu")
        _need(f"linear_geglu_after '{W.name}' x", x, 4 * W.K, f"x must hold [{W.K}] fp32")
        _need(f"linear_geglu_after '{W.name}' y", y, 4 * (W.N // 2), f"y must hold [{W.N // 2}] fp32")
        self._matvec(rec, W, "plain", {"x": x, "y": y}, out="geglu")

    # Split K so a product has at least SPLIT_K_GROUPS workgroups and no workgroup walks more than
    # SPLIT_K_MAX of K, never below SPLIT_K_MIN per split: the rule for devices whose tuning file does not
    # give matmul_coop's resident_groups. On the H200 (gemforge bench --synthetic 27b --weights q4_0)
    # this took prefill-512 from 1,143 tok/s (splitting only below 256 workgroups) to 1,280 tok/s.
    SPLIT_K_GROUPS = 1024
    SPLIT_K_MAX = 2048
    SPLIT_K_MIN = 1024
    SPLIT_SUM_STEPS = 2         # split_sum's dispatch and barrier, in K steps of one wave (the cost model)

    def k_splits(self, tiles: int, K: int, tile_k: int, T: int = 0, rows: int = 0,
                 resident: int = 0, step_bytes: float = 0.0) -> tuple[int, int]:
        """(splits, K per split, a multiple of tile_k) for a product of ``tiles`` output tiles of T x rows.

        With ``resident`` (workgroups the device runs at once) and ``step_bytes`` (split-K partial bytes,
        written and read back by split_sum, that cost as long as one K step of one wave), both from the
        device's tuning file: the splits that minimise waves x K steps per workgroup + partial traffic
        + split_sum's own cost, in K steps. On the H200 this model matched linear_probe's times of the
        4B and 27B products within 7 %. Otherwise the fixed rule above."""
        if resident <= 0 or step_bytes <= 0:
            want = max(cdiv(self.SPLIT_K_GROUPS, tiles), cdiv(K, self.SPLIT_K_MAX))
            splits = max(1, min(want, K // self.SPLIT_K_MIN))
            kchunk = cdiv(cdiv(K, splits), tile_k) * tile_k
            return cdiv(K, kchunk), kchunk
        best = None
        for want in range(1, min(64, cdiv(K, tile_k)) + 1):
            kchunk = cdiv(cdiv(K, want), tile_k) * tile_k
            splits = cdiv(K, kchunk)          # rounding kchunk up to tile_k may leave fewer splits
            cost = cdiv(tiles * splits, resident) * (kchunk // tile_k)
            if splits > 1:
                cost += 2 * splits * T * rows * 4 / step_bytes + self.SPLIT_SUM_STEPS
            if best is None or cost < best[0] - 1e-9:
                best = (cost, splits, kchunk)
        return best[1], best[2]

    def matmul_choice(self, fmt: str, bucket: int) -> tuple[str, str]:
        """(op, why) of the prefill product for ``fmt`` and ``bucket``: 'matmul_coop' (cooperative
        matrix) where the device has every feature it requires and it was built, else the portable
        'matmul'. ``why`` says which and, for the portable one, what the faster one lacks."""
        if self.portable_only:
            return "matmul", "portable matmul (cooperative matrix turned off)"
        return self.coop_choice("matmul_coop", "matmul", "matmul", "cooperative-matrix matmul (fp16 inputs, fp32 sums)",
                                format=fmt, bucket=bucket)

    def prefill_matmul(self, fmt: str) -> str:
        """What the prefill of weights in ``fmt`` runs, for run summaries and benchmark records."""
        buckets = self.buckets(fmt)
        return self.matmul_choice(fmt, buckets[-1])[1] if buckets else f"no prefill kernels built for {fmt}"

    def matmul_program(self, fmt: str, bucket: int, shape: str = ""):
        op, _ = self.matmul_choice(fmt, bucket)
        return self.program(op, shape=shape, format=fmt, bucket=bucket)

    # Shape classes: a product runs the parameters of configs/tuning/<device>-<class>.yaml where there
    # is such a file with an entry for its kernel, else the device's main file.
    #   small: at most SMALL_ELEMENTS weights (on the H200 the tiles tuned for the 4B/27B shapes leave the
    #          270M's matrices with too few workgroups);
    #   long:  K at least LONG_RATIO times N (the down projections: few rows of many chunks, so few
    #          workgroups; on the H200 their best matrix-vector layout differs from the wide q/k/v, o
    #          and gate/up products': q8_0 16 rows a group of 128 threads against 8);
    #   ""     every other product.
    SMALL_ELEMENTS = 4 << 20
    LONG_RATIO = 2
    SHAPE_CLASSES = ("small", "long", "")

    def shape_class(self, W: Weight) -> str:
        return self.shape_class_of(W.N, W.K)

    def shape_class_of(self, N: int, K: int) -> str:
        if N * K <= self.SMALL_ELEMENTS:
            return "small"
        return "long" if K >= self.LONG_RATIO * N else ""

    def is_small(self, W: Weight) -> bool:
        return self.shape_class(W) == "small"

    # -- embedding ------------------------------------------------------------------------------
    def embed(self, rec: Recording, table: Weight, ids, out, T: int, scale: float) -> None:
        """out[t, :] = dequant(table row ids[t]) * scale for t < T (ids: uint32 [T])."""
        if T < 1:
            raise GemforgeError(f"embed '{table.name}': T = {T} tokens; at least 1 is needed")
        _need(f"embed '{table.name}' ids", ids, 4 * T, f"ids must hold {T} uint32 token ids")
        _need(f"embed '{table.name}' out", out, 4 * T * table.K, f"out must hold [{T}, {table.K}] fp32")
        prog = self.program("embed", format=table.fmt)
        for p in table.parts:
            rec.dispatch(prog, {"table": p.buffer, "ids": ids, "y": out},
                         {"K": table.K, "T": T, "rows": p.rows, "row0": p.row0, "scale": scale}, groups_2d(T))
