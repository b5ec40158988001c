"""Read back the MLIR subset our templates write (the pinned mlir-aie release's syntax), into plain data.

The resource checker and the emulator both work on this parse of the *generated text*, not on the
generator's inputs, so what they verify is what aiecc would compile.  It understands: ``aie.device``,
``aie.tile``, ``aie.buffer``, ``func.func private``, ``aie.objectfifo`` (with ``dimensionsToStream``),
``aie.objectfifo.link``, ``aie.core`` bodies (``arith.constant``, ``arith.index_cast``, ``scf.for``,
``aie.objectfifo.acquire`` / ``subview.access`` / ``release``, ``func.call``) with ``link_with`` and
``stack_size``, and ``aiex.runtime_sequence`` with ``aiex.npu.dma_memcpy_nd`` and ``aiex.npu.dma_wait``.
Anything else is an error naming the line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

DTYPES = {"i8": np.int8, "i16": np.int16, "i32": np.int32, "f32": np.float32, "bf16": np.uint16}


class MlirError(ValueError):
    pass


@dataclass(frozen=True)
class MemRef:
    shape: tuple[int, ...]
    dtype: str

    @property
    def count(self) -> int:
        return int(np.prod(self.shape))

    @property
    def elem_bytes(self) -> int:
        return np.dtype(DTYPES[self.dtype]).itemsize

    @property
    def nbytes(self) -> int:
        return self.count * self.elem_bytes


def tile_kind(tile: tuple[int, int]) -> str:
    return "shim" if tile[1] == 0 else "mem" if tile[1] == 1 else "core"


def tile_label(tile: tuple[int, int]) -> str:
    return {"shim": "shim tile", "mem": "memtile", "core": "compute tile"}[tile_kind(tile)] + f" ({tile[0]},{tile[1]})"


@dataclass
class Fifo:
    name: str
    producer: tuple[int, int]
    consumers: list[tuple[int, int]]
    depth: int
    type: MemRef
    dims: list[tuple[int, int]]
    line: int


@dataclass
class Link:
    srcs: list[str]
    dsts: list[str]
    src_offsets: list[int]
    dst_offsets: list[int]
    line: int


@dataclass
class Dma:
    arg: int
    offsets: list[int]
    sizes: list[int]
    strides: list[int]
    id: int
    fifo: str
    token: bool
    line: int


@dataclass
class Wait:
    fifo: str
    line: int


@dataclass
class Core:
    tile: tuple[int, int]
    body: list              # ops: tuples, see _parse_block
    link_with: str | None
    stack_size: int
    line: int


@dataclass
class Module:
    device: str
    tiles: dict[str, tuple[int, int]] = field(default_factory=dict)        # SSA name -> (col, row)
    buffers: dict[str, tuple[tuple[int, int], MemRef]] = field(default_factory=dict)
    funcs: dict[str, list] = field(default_factory=dict)                 # name -> [MemRef | "i32"]
    fifos: dict[str, Fifo] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    cores: list[Core] = field(default_factory=list)
    args: list[MemRef] = field(default_factory=list)
    seq: list = field(default_factory=list)                              # Dma | Wait


_MEMREF = re.compile(r"memref<([0-9x]+)x(i8|i16|i32|f32|bf16)>")


def parse_memref(text: str, line: int = 0) -> MemRef:
    m = _MEMREF.fullmatch(text.strip())
    if not m:
        raise MlirError(f"line {line}: not a static memref type: {text.strip()!r}")
    return MemRef(tuple(int(x) for x in m.group(1).split("x")), m.group(2))


def _ints(text: str) -> list[int]:
    text = text.strip()
    return [int(x) for x in text.split(",")] if text else []


_RE = {k: re.compile(v) for k, v in {
    "device": r"aie\.device\((\w+)\) \{",
    "tile": r"%(\w+) = aie\.tile\((\d+), (\d+)\)",
    "buffer": r"%(\w+) = aie\.buffer\(%(\w+)\) \{sym_name = \"(\w+)\"\} : (memref<[^>]+>)",
    "func": r"func\.func private @(\w+)\((.*)\)",
    "fifo": r"aie\.objectfifo @(\w+)\(%(\w+)(?: dimensionsToStream \[(.*?)\])?, \{(.*?)\}, (\d+) : i32\) : "
            r"!aie\.objectfifo<(memref<[^>]+>)>",
    "link": r"aie\.objectfifo\.link \[(.*?)\] -> \[(.*?)\]\(\[(.*?)\] \[(.*?)\]\)",
    "core": r"%\w+ = aie\.core\(%(\w+)\) \{",
    "core_end": r"\} \{link_with = \"([^\"]+)\", stack_size = (\d+) : i32\}",
    "seq": r"aiex\.runtime_sequence\((.*)\) \{",
    "dma": r"aiex\.npu\.dma_memcpy_nd\(%arg(\d+)\[(.*?)\]\[(.*?)\]\[(.*?)\]\) \{id = (\d+) : i64, "
           r"(issue_token = true, )?metadata = @(\w+)\} : (memref<[^>]+>)",
    "wait": r"aiex\.npu\.dma_wait \{symbol = @(\w+)\}",
    "const": r"%(\w+) = arith\.constant (-?\d+) : (index|i32)",
    "cast": r"%(\w+) = arith\.index_cast %(\w+) : index to i32",
    "for": r"scf\.for %(\w+) = %(\w+) to %(\w+) step %(\w+) \{",
    "acquire": r"%(\w+) = aie\.objectfifo\.acquire @(\w+)\((Produce|Consume), (\d+)\) : .*",
    "access": r"%(\w+) = aie\.objectfifo\.subview\.access %(\w+)\[(\d+)\] : .*",
    "release": r"aie\.objectfifo\.release @(\w+)\((Produce|Consume), (\d+)\)",
    "call": r"func\.call @(\w+)\((.*?)\) : \(.*\) -> \(\)",
}.items()}


def parse(text: str) -> Module:
    lines = [(i + 1, ln.split("//")[0].strip()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln]
    pos = 0

    def take() -> tuple[int, str]:
        nonlocal pos
        if pos >= len(lines):
            raise MlirError("unexpected end of the module")
        pos += 1
        return lines[pos - 1]

    i, ln = take()
    if ln != "module {":
        raise MlirError(f"line {i}: expected 'module {{', got {ln!r}")
    i, ln = take()
    m = _RE["device"].fullmatch(ln)
    if not m:
        raise MlirError(f"line {i}: expected aie.device(...), got {ln!r}")
    mod = Module(device=m.group(1))

    def tile_of(name: str, i: int) -> tuple[int, int]:
        if name not in mod.tiles:
            raise MlirError(f"line {i}: %{name} is not a declared aie.tile")
        return mod.tiles[name]

    def block(end_ok) -> list:
        """Core body ops until a closing brace; ``end_ok`` receives the closing line."""
        ops = []
        while True:
            i, ln = take()
            if ln.startswith("}"):
                end_ok(i, ln)
                return ops
            if ln == "aie.end":
                ops.append(("end",))
                continue
            for kind in ("const", "cast", "for", "acquire", "access", "release", "call"):
                mm = _RE[kind].fullmatch(ln)
                if mm:
                    break
            else:
                raise MlirError(f"line {i}: unsupported op in a core: {ln!r}")
            g = mm.groups()
            if kind == "for":
                def close(j, l):
                    if l != "}":
                        raise MlirError(f"line {j}: expected '}}' closing scf.for, got {l!r}")
                ops.append(("for", g[0], g[1], g[2], g[3], block(close), i))
            elif kind == "call":
                args = [a.strip().lstrip("%") for a in g[1].split(",")] if g[1].strip() else []
                ops.append(("call", g[0], args, i))
            elif kind == "const":
                ops.append(("const", g[0], int(g[1]), i))
            elif kind == "cast":
                ops.append(("cast", g[0], g[1], i))
            elif kind == "acquire":
                ops.append(("acquire", g[0], g[1], g[2], int(g[3]), i))
            elif kind == "access":
                ops.append(("access", g[0], g[1], int(g[2]), i))
            else:
                ops.append(("release", g[0], g[1], int(g[2]), i))

    while True:
        i, ln = take()
        if ln == "}":          # end of aie.device
            break
        if (m := _RE["tile"].fullmatch(ln)):
            mod.tiles[m.group(1)] = (int(m.group(2)), int(m.group(3)))
        elif (m := _RE["buffer"].fullmatch(ln)):
            mod.buffers[m.group(1)] = (tile_of(m.group(2), i), parse_memref(m.group(4), i))
        elif (m := _RE["func"].fullmatch(ln)):
            types = [t.strip() for t in m.group(2).split(",")] if m.group(2).strip() else []
            mod.funcs[m.group(1)] = [t if t == "i32" else parse_memref(t, i) for t in types]
        elif (m := _RE["fifo"].fullmatch(ln)):
            name, prod, dims, cons, depth, typ = m.groups()
            dl = [(int(a), int(b)) for a, b in re.findall(r"<size = (\d+), stride = (\d+)>", dims or "")]
            consumers = [tile_of(c.strip().lstrip("%"), i) for c in cons.split(",")]
            mod.fifos[name] = Fifo(name, tile_of(prod, i), consumers, int(depth), parse_memref(typ, i), dl, i)
        elif (m := _RE["link"].fullmatch(ln)):
            srcs = [s.strip().lstrip("@") for s in m.group(1).split(",")]
            dsts = [s.strip().lstrip("@") for s in m.group(2).split(",")]
            mod.links.append(Link(srcs, dsts, _ints(m.group(3)), _ints(m.group(4)), i))
        elif (m := _RE["core"].fullmatch(ln)):
            tile = tile_of(m.group(1), i)
            attrs = {}

            def core_end(j, l):
                mm = _RE["core_end"].fullmatch(l)
                if not mm:
                    raise MlirError(f"line {j}: expected '}} {{link_with = ..., stack_size = ...}}', got {l!r}")
                attrs["link_with"], attrs["stack"] = mm.group(1), int(mm.group(2))
            body = block(core_end)
            mod.cores.append(Core(tile, body, attrs["link_with"], attrs["stack"], i))
        elif (m := _RE["seq"].fullmatch(ln)):
            for a in re.findall(r"%arg(\d+): (memref<[^>]+>)", m.group(1)):
                mod.args.append(parse_memref(a[1], i))
            while True:
                j, l = take()
                if l == "}":
                    break
                if (d := _RE["dma"].fullmatch(l)):
                    mod.seq.append(Dma(int(d.group(1)), _ints(d.group(2)), _ints(d.group(3)), _ints(d.group(4)),
                                       int(d.group(5)), d.group(7), bool(d.group(6)), j))
                elif (w := _RE["wait"].fullmatch(l)):
                    mod.seq.append(Wait(w.group(1), j))
                else:
                    raise MlirError(f"line {j}: unsupported op in the runtime sequence: {l!r}")
        else:
            raise MlirError(f"line {i}: unsupported op: {ln!r}")
    for link in mod.links:
        for f in link.srcs + link.dsts:
            if f not in mod.fifos:
                raise MlirError(f"line {link.line}: link names @{f}, which is not an objectfifo")
    for s in mod.seq:
        if s.fifo not in mod.fifos:
            raise MlirError(f"line {s.line}: @{s.fifo} is not an objectfifo")
    return mod
