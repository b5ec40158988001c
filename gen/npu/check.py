"""The resource checker: does a generated design fit Phoenix (npu1)?  Run on every design before compiling.

It reads the design's MLIR text (``mlir.parse``), so it checks exactly what aiecc would get, and reports
*every* violation as (tile, resource, need, limit).  Per resource:

* array: tiles in 4 columns, shim row 0, memtile row 1, compute rows 2..5;
* data memory per compute tile: every ObjectFifo buffer on it (element x depth, each end: a broadcast
  gives every consumer its own buffers), every ``aie.buffer``, and the core's stack (``stack_size``) <= 64 KB;
* memtile memory: buffers of fifos ending there, a link's buffers counted once (the larger side) <= 512 KB;
* program memory (estimate, see ``CODE_BYTES``): startup code, the kernels called, and the core's loop
  bodies times the copies the ObjectFifo lowering makes (loops that acquire fifos of depth d are unrolled
  d times so buffer addresses are static) <= 16 KB;
* locks: 2 per ObjectFifo end on a tile (producer and consumer semaphores) <= 16 (64 on a memtile); a fifo
  between neighbouring tiles through shared memory (the release's ``requiresDMAs`` is false: one consumer, no
  dimensionsToStream, not linked) has its buffers and 2 locks in the producer's tile and uses no DMA;
* buffer descriptors: one per buffer of each ObjectFifo end using a DMA <= 16 (48 on a memtile); on the shim
  the runtime sequence's BD ids must be < 16;
* DMA channels: one S2MM per fifo arriving at a tile, one MM2S per fifo leaving it (a broadcast is one)
  <= 2 + 2 per compute tile, 6 + 6 per memtile, 2 + 2 per shim;
* BD shapes: a memtile/compute producer's ``dimensionsToStream`` and every runtime ``dma_memcpy_nd``, as
  the pinned release's verifier (verifyStridesWraps) checks them: wraps of at most 1023 words (255 on a
  compute tile; the innermost counted in 32-bit words), at most 64 repeats, strides of at most 2^20 words on
  the shim, 4-byte alignment of offsets, innermost sizes and strides.  A linear transfer ([1,1,1,len]) is
  exempt from the innermost wrap, as in the release.  The shim's third dimension has no wrap register.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from gemforge.runtime.errors import SpecError

from .limits import LIMITS, Limits
from .mlir import Dma, MemRef, Module, parse, tile_kind, tile_label

# Estimated code size (bytes) of what a core runs; the real figure is in the compiled ELF.
CODE_BYTES = {
    "base": 1536,                 # crt0, main, lock helpers
    "zero_acc": 128,
    "matmul_i8_i32": 1024,        # + "per_accumulator" x accumulators kept (the 4x8x8 mmul expansion)
    "per_accumulator": 160,
    "matvec_i8_i32": 768,
    "requant_f32": 1024,
    "requant_bf16": 1152,
    "other_kernel": 1024,
    "acquire": 48, "release": 32, "access": 8, "call": 24, "for": 32, "const": 8, "cast": 8, "end": 4,
}


@dataclass(frozen=True)
class Violation:
    tile: str
    resource: str
    need: int | str
    limit: int | str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.tile}: {self.resource} needs {self.need}, limit {self.limit}" + \
            (f" ({self.detail})" if self.detail else "")


class ResourceError(SpecError):
    """A design that does not fit; ``violations`` lists every one."""

    def __init__(self, design: str, violations: list[Violation]):
        self.design = design
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"NPU design {design} does not fit Phoenix (npu1): {len(violations)} violation(s):\n{lines}",
                         "lower the tiling or depth in the op's `npu:` section (configs/ops/*.yaml)")


@dataclass
class Usage:
    """What a design uses per tile (for `gemforge plan` and the manifest)."""
    data: dict            # compute tile -> bytes
    memtile: dict         # memtile -> bytes
    program: dict         # compute tile -> estimated bytes

    @property
    def cores(self) -> int:
        return len(self.data)


def _ends(mod: Module):
    """(tile, fifo, role) for every fifo end: role 'prod' or 'cons'."""
    for f in mod.fifos.values():
        yield f.producer, f, "prod"
        for c in f.consumers:
            yield c, f, "cons"


def _words(elems: int, mr: MemRef) -> float:
    return elems * mr.elem_bytes / LIMITS.align_bytes


def usage_and_violations(mod: Module, L: Limits = LIMITS) -> tuple[Usage, list[Violation]]:
    out: list[Violation] = []
    tiles = set(mod.tiles.values())
    for t in sorted(tiles):
        c, r = t
        if not 0 <= c < L.columns:
            out.append(Violation(f"tile ({c},{r})", "array columns", c + 1, L.columns, "npu1 has 4 columns"))
        if not 0 <= r < L.first_compute_row + L.compute_rows:
            out.append(Violation(f"tile ({c},{r})", "array rows", r + 1, L.first_compute_row + L.compute_rows,
                                 "row 0 shim, row 1 memtiles, rows 2-5 compute"))

    # data memory, locks, BDs, channels per tile
    mem: dict = {}
    locks: dict = {}
    bds: dict = {}
    s2mm: dict = {}
    mm2s: dict = {}
    linked_at_mem = {(f, "cons") for l in mod.links for f in l.srcs} | {(f, "prod") for l in mod.links for f in l.dsts}
    linked = {f for l in mod.links for f in l.srcs + l.dsts}
    for f in mod.fifos.values():
        if _shared(f, linked):     # neighbours through shared memory: buffers and locks in one tile, no DMA
            t = f.producer
            locks[t] = locks.get(t, 0) + 2
            mem[t] = mem.get(t, 0) + f.type.nbytes * f.depth
    for tile, f, role in _ends(mod):
        if _shared(f, linked):
            continue
        kind = tile_kind(tile)
        locks[tile] = locks.get(tile, 0) + 2
        if kind != "shim":
            bds[tile] = bds.get(tile, 0) + f.depth
        (mm2s if role == "prod" else s2mm)[tile] = (mm2s if role == "prod" else s2mm).get(tile, 0) + 1
        if kind == "core" or (kind == "mem" and (f.name, role) not in linked_at_mem):
            mem[tile] = mem.get(tile, 0) + f.type.nbytes * f.depth
    for link in mod.links:
        f0 = mod.fifos[link.srcs[0]]
        tile = f0.consumers[0]
        fs = [mod.fifos[n] for n in link.srcs + link.dsts]
        side = max(sum(mod.fifos[n].type.nbytes for n in link.srcs), sum(mod.fifos[n].type.nbytes for n in link.dsts))
        mem[tile] = mem.get(tile, 0) + side * max(f.depth for f in fs)
    for name, (tile, mr) in mod.buffers.items():
        mem[tile] = mem.get(tile, 0) + mr.nbytes
    program = {}
    for core in mod.cores:
        mem[core.tile] = mem.get(core.tile, 0) + core.stack_size
        program[core.tile] = _program_bytes(mod, core)

    for t in sorted(tiles):
        kind = tile_kind(t)
        where = tile_label(t)
        if kind == "core" and mem.get(t, 0) > L.core_data_bytes:
            out.append(Violation(where, "data memory", f"{mem[t]} bytes", f"{L.core_data_bytes} bytes",
                                 _memory_detail(mod, t)))
        if kind == "mem" and mem.get(t, 0) > L.memtile_bytes:
            out.append(Violation(where, "memtile memory", f"{mem[t]} bytes", f"{L.memtile_bytes} bytes",
                                 _memory_detail(mod, t)))
        if kind == "core" and program.get(t, 0) > L.core_program_bytes:
            out.append(Violation(where, "program memory (estimate)", f"{program[t]} bytes",
                                 f"{L.core_program_bytes} bytes", "kernels plus unrolled ObjectFifo loops"))
        if locks.get(t, 0) > L.per_kind(L.locks, kind):
            out.append(Violation(where, "locks", locks[t], L.per_kind(L.locks, kind), "2 per ObjectFifo end"))
        if bds.get(t, 0) > L.per_kind(L.bds, kind):
            out.append(Violation(where, "buffer descriptors", bds[t], L.per_kind(L.bds, kind),
                                 "1 per buffer of each ObjectFifo end"))
        n_in, n_out = L.per_kind(L.channels, kind)
        if s2mm.get(t, 0) > n_in:
            out.append(Violation(where, "DMA input channels (S2MM)", s2mm[t], n_in, _fifos_at(mod, t, "cons")))
        if mm2s.get(t, 0) > n_out:
            out.append(Violation(where, "DMA output channels (MM2S)", mm2s[t], n_out, _fifos_at(mod, t, "prod")))

    for f in mod.fifos.values():
        out += _check_fifo_dims(f, L)
    for op in mod.seq:
        if isinstance(op, Dma):
            out += _check_dma(mod, op, L)
    data = {t: b for t, b in mem.items() if tile_kind(t) == "core"}
    return Usage(data, {t: b for t, b in mem.items() if tile_kind(t) == "mem"}, program), out


def _shared(f, linked) -> bool:
    """Whether a fifo goes through shared memory instead of DMAs (the release's requiresDMAs): one consumer,
    no dimensionsToStream, not linked, both compute tiles that are neighbours (or two neighbouring memtiles)."""
    if len(f.consumers) != 1 or f.dims or f.name in linked:
        return False
    (pc, pr), (cc, cr) = f.producer, f.consumers[0]
    kinds = {tile_kind(f.producer), tile_kind(f.consumers[0])}
    if kinds == {"core"}:
        return abs(pc - cc) + abs(pr - cr) == 1
    return kinds == {"mem"} and pr == cr and abs(pc - cc) == 1


def _memory_detail(mod: Module, tile) -> str:
    parts = [f"@{f.name} {f.depth}x{f.type.nbytes}" for t, f, role in _ends(mod) if t == tile]
    parts += [f"%{n} {mr.nbytes}" for n, (t, mr) in mod.buffers.items() if t == tile]
    parts += [f"stack {c.stack_size}" for c in mod.cores if c.tile == tile]
    return ", ".join(parts)


def _fifos_at(mod: Module, tile, role) -> str:
    return ", ".join(f"@{f.name}" for t, f, r in _ends(mod) if t == tile and r == role)


def _check_fifo_dims(f, L: Limits) -> list[Violation]:
    if not f.dims:
        return []
    kind = tile_kind(f.producer)
    where = f"{tile_label(f.producer)} @{f.name}"
    if kind == "shim":
        return [Violation(where, "dimensionsToStream on a shim tile", len(f.dims), 0,
                          "shim transfers take their layout from the runtime sequence")]
    out = []
    if len(f.dims) > L.per_kind(L.bd_dims, kind):
        out.append(Violation(where, "BD dimensions", len(f.dims), L.per_kind(L.bd_dims, kind)))
    wrap = L.core_bd_dim_words if kind == "core" else L.bd_dim_words
    eb = f.type.elem_bytes
    for i, (size, stride) in enumerate(f.dims):
        inner = i == len(f.dims) - 1
        if inner and (size * eb) % L.align_bytes:
            out.append(Violation(where, "4-byte alignment of the innermost size", f"{size * eb} bytes",
                                 f"a multiple of {L.align_bytes}"))
            continue
        if not (inner and stride == 1) and (stride * eb) % L.align_bytes:
            out.append(Violation(where, f"4-byte alignment of stride {i}", f"{stride * eb} bytes",
                                 f"a multiple of {L.align_bytes}"))
        words = size * eb // L.align_bytes if inner else size
        if words > wrap:
            out.append(Violation(where, f"BD dimension {i} size", f"{words} {'words' if inner else 'steps'}",
                                 wrap))
    if f.type.nbytes % L.align_bytes:
        out.append(Violation(where, "4-byte alignment of the element", f"{f.type.nbytes} bytes",
                             f"a multiple of {L.align_bytes}"))
    return out


def _check_dma(mod: Module, op: Dma, L: Limits) -> list[Violation]:
    fifo = mod.fifos[op.fifo]
    shim = fifo.producer if tile_kind(fifo.producer) == "shim" else fifo.consumers[0]
    where = f"{tile_label(shim)} line {op.line} (@{op.fifo})"
    mr = mod.args[op.arg]
    eb = mr.elem_bytes
    out = []
    if op.id >= L.per_kind(L.bds, "shim"):
        out.append(Violation(where, "BD id", op.id, f"< {L.per_kind(L.bds, 'shim')}"))
    if any(s <= 0 for s in op.sizes):
        out.append(Violation(where, "sizes", op.sizes, "all positive"))
        return out
    offset = op.offsets[3] * eb
    if offset % L.align_bytes:
        out.append(Violation(where, "4-byte alignment of the offset", f"{offset} bytes", f"a multiple of {L.align_bytes}"))
    if (op.sizes[3] * eb) % L.align_bytes:
        out.append(Violation(where, "4-byte alignment of the innermost size", f"{op.sizes[3] * eb} bytes",
                             f"a multiple of {L.align_bytes}"))
    for i in range(3):
        if op.sizes[i] > 1 and (op.strides[i] * eb) % L.align_bytes:
            out.append(Violation(where, f"4-byte alignment of stride {3 - i}", f"{op.strides[i] * eb} bytes",
                                 f"a multiple of {L.align_bytes}"))
    linear = op.sizes[:3] == [1, 1, 1] and op.strides[3] == 1
    d0 = op.sizes[3] * eb // L.align_bytes
    if not linear and d0 > L.bd_dim_words:
        out.append(Violation(where, "BD dimension 0 size", f"{d0} words", L.bd_dim_words))
    if op.sizes[2] > L.bd_dim_words:
        out.append(Violation(where, "BD dimension 1 size", op.sizes[2], L.bd_dim_words))
    if op.sizes[0] > L.repeats:
        out.append(Violation(where, "repeat count", op.sizes[0], L.repeats))
    for i in range(4):
        size = op.sizes[i]
        if size > 1 and op.strides[i] * eb // L.align_bytes > L.shim_stride_words:
            out.append(Violation(where, f"BD dimension {3 - i} stride", f"{op.strides[i] * eb // L.align_bytes} words",
                                 L.shim_stride_words))
    return out


def _loop_copies(trips: int, depths: list[int]) -> int:
    """Body copies of a loop after the ObjectFifo lowering unrolls it by the depths it cycles through."""
    if not depths:
        return 1
    factor = math.lcm(*depths)
    if factor <= 1:
        return 1
    if trips <= factor:
        return trips
    return factor + trips % factor


def _program_bytes(mod: Module, core) -> int:
    consts: dict = {}
    called = set()

    def size(ops) -> int:
        total = 0
        for op in ops:
            kind = op[0]
            if kind == "const":
                consts[op[1]] = op[2]
            if kind == "for":
                _, var, lo, hi, step, body, _ = op
                depths = [mod.fifos[o[2]].depth for o in body if o[0] == "acquire"]
                trips = max(1, (consts.get(hi, 1) - consts.get(lo, 0)) // max(1, consts.get(step, 1)))
                total += CODE_BYTES["for"] + size(body) * _loop_copies(trips, depths)
            else:
                total += CODE_BYTES.get(kind, 16)
                if kind == "call":
                    called.add(op[1])
        return total

    body = size(core.body)
    kernels = 0
    for name in called:
        kernels += CODE_BYTES.get(name, CODE_BYTES["other_kernel"])
        if name == "matmul_i8_i32":
            kernels += CODE_BYTES["per_accumulator"] * _accumulators(mod.funcs.get(name, []))
    return CODE_BYTES["base"] + kernels + body


def _accumulators(types) -> int:
    from .design import kernel_expansion
    try:
        m, n = types[0].shape[0], types[1].shape[0]
    except (IndexError, AttributeError):
        return 1
    em, en = kernel_expansion(m, n)
    return em * en


def check_text(mlir_text: str, name: str) -> Usage:
    """Parse and check one design; raise ``ResourceError`` listing every violation."""
    usage, violations = usage_and_violations(parse(mlir_text))
    if violations:
        raise ResourceError(name, violations)
    return usage
