"""A numpy emulation of a generated design: run the MLIR text (parsed by ``mlir.py``) on host arrays.

What is emulated, in data (not time): the runtime sequence's shim DMAs with their offsets, sizes and
strides; ObjectFifos as object streams (broadcast to every consumer, split at ``objectfifo.link``
offsets, joined at offsets, reordered by the producer's ``dimensionsToStream``); the cores' programs op by
op (``scf.for``, acquire / access / release, ``func.call`` into the numpy mirrors of the C++ kernels in
``kernels.py``); the shim's writes back to the host, and ``dma_wait``.  FIFOs are unbounded here, so this
checks values, order and the amount of data every party sends and takes, not timing or deadlock under
finite depth.  A design that sends too little, too much, or reads an element nobody wrote (outputs start
as 0xCD garbage) fails with an ``EmulationError`` naming the fifo or core.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from . import kernels
from .mlir import DTYPES, Dma, Module, Wait, parse, tile_kind

GARBAGE = 0xCD


class EmulationError(RuntimeError):
    pass


def access_indices(sizes, strides, offset=0) -> np.ndarray:
    """Element indices of an access pattern (outermost dimension first)."""
    idx = np.array([offset], np.int64)
    for size, stride in zip(sizes, strides):
        idx = (idx[:, None] + np.arange(size, dtype=np.int64)[None, :] * stride).reshape(-1)
    return idx


def _dims_order(dims, count: int) -> np.ndarray:
    """Element order in which a producer's DMA reads one object (outermost size extended to cover it)."""
    if not dims:
        return np.arange(count)
    inner = int(np.prod([d[0] for d in dims[1:]])) if len(dims) > 1 else 1
    if count % inner:
        raise EmulationError(f"dimensionsToStream {dims} do not tile an object of {count} elements")
    sizes = [count // inner] + [d[0] for d in dims[1:]]
    return access_indices(sizes, [d[1] for d in dims])


def _bytes_of(idx: np.ndarray, elem: int) -> np.ndarray:
    return (idx[:, None] * elem + np.arange(elem)[None, :]).reshape(-1)


class _Fifo:
    def __init__(self, f):
        self.f = f
        self.queues = {c: deque() for c in f.consumers}     # objects (uint8 arrays) per consumer
        self.inbox = bytearray()                             # shim MM2S bytes not yet a whole object
        self.order = _bytes_of(_dims_order(f.dims, f.type.count), f.type.elem_bytes)
        if f.dims and (self.order.size != f.type.nbytes or self.order.max() >= f.type.nbytes
                       or np.unique(self.order).size != f.type.nbytes):
            raise EmulationError(f"line {f.line}: dimensionsToStream of @{f.name} do not read its "
                                 f"{f.type.count} elements exactly once")

    def send(self, obj: np.ndarray) -> None:
        """The producer hands over one object: its DMA streams it (in dims order) to every consumer."""
        streamed = obj[self.order] if self.f.dims else obj
        for q in self.queues.values():
            q.append(streamed.copy())


class Emulator:
    def __init__(self, text: str, kind: str, probe: bool = False):
        self.mod: Module = parse(text)
        self.kind = kind
        self.probe = probe
        self.fifos = {n: _Fifo(f) for n, f in self.mod.fifos.items()}
        self.steps = 0          # counts every object moved: settle() runs until nothing moves

    # -- data movement ---------------------------------------------------------------------------------
    def _deliver_from_shim(self, fifo: _Fifo, data: np.ndarray) -> None:
        fifo.inbox += data.tobytes()
        size = fifo.f.type.nbytes
        while len(fifo.inbox) >= size:
            fifo.send(np.frombuffer(bytes(fifo.inbox[:size]), np.uint8))
            del fifo.inbox[:size]

    def _forward_links(self) -> None:
        """Memtile links: move every complete set of input objects to the outputs."""
        for link in self.mod.links:
            ins = [self.fifos[s] for s in link.srcs]
            mem = ins[0].f.consumers[0]
            while all(len(f.queues[mem]) for f in ins):
                objs = [f.queues[mem].popleft() for f in ins]
                if len(ins) > 1:       # join at src offsets (elements of the output type)
                    out = self.fifos[link.dsts[0]]
                    whole = np.full(out.f.type.nbytes, GARBAGE, np.uint8)
                    eb = out.f.type.elem_bytes
                    for o, off in zip(objs, link.src_offsets):
                        whole[off * eb: off * eb + o.size] = o
                    out.send(whole)
                else:                  # 1 -> 1, or distribute at dst offsets
                    obj = objs[0]
                    offs = link.dst_offsets or [0]
                    for d, off in zip(link.dsts, offs):
                        out = self.fifos[d]
                        eb = out.f.type.elem_bytes
                        out.send(obj[off * eb: off * eb + out.f.type.nbytes])
                self.steps += 1

    # -- cores -------------------------------------------------------------------------------------------
    def _core(self, core):
        """A generator running one core's program; it yields whenever it waits for data."""
        env: dict = {}
        held: dict = {}
        local = {name: np.full(mr.nbytes, GARBAGE, np.uint8) for name, (tile, mr) in self.mod.buffers.items()
                 if tile == core.tile}
        types = {}

        def view(name):
            if name in local:
                mr = self.mod.buffers[name][1]
                return local[name].view(DTYPES[mr.dtype]).reshape(mr.shape)
            v = env[name]
            if isinstance(v, tuple):        # (bytes, MemRef) of an acquired element
                return v[0].view(DTYPES[v[1].dtype]).reshape(v[1].shape)
            return v

        def run(ops):
            for op in ops:
                kind = op[0]
                if kind == "const":
                    env[op[1]] = op[2]
                elif kind == "cast":
                    env[op[1]] = int(env[op[2]])
                elif kind == "for":
                    _, var, lo, hi, step, body, _ = op
                    i = env[lo]
                    while i < env[hi]:
                        env[var] = i
                        yield from run(body)
                        i += env[step]
                elif kind == "acquire":
                    _, var, name, port, n, line = op
                    fifo = self.fifos[name]
                    if n != 1:
                        raise EmulationError(f"line {line}: acquire of {n} elements is not emulated")
                    if port == "Consume":
                        q = fifo.queues[core.tile]
                        while not q:
                            yield f"waiting for @{name}"
                        env[var] = (q[0], fifo.f.type)
                    else:
                        obj = held.setdefault(name, np.full(fifo.f.type.nbytes, GARBAGE, np.uint8))
                        env[var] = (obj, fifo.f.type)
                    types[var] = fifo.f.type
                elif kind == "access":
                    env[op[1]] = env[op[2]]
                elif kind == "release":
                    _, name, port, n, line = op
                    fifo = self.fifos[name]
                    self.steps += 1
                    if port == "Consume":
                        fifo.queues[core.tile].popleft()
                    else:
                        fifo.send(held.pop(name))
                elif kind == "call":
                    _, fname, args, line = op
                    try:
                        fn = kernels.lookup(fname, self.kind, self.probe)
                    except KeyError:
                        raise EmulationError(f"line {line}: no numpy mirror for kernel @{fname}") from None
                    fn(*[view(a) for a in args])
                elif kind == "end":
                    return
        return run(core.body)

    # -- the runtime sequence ------------------------------------------------------------------------------
    def run(self, args: list[np.ndarray]) -> list[np.ndarray]:
        """Run the runtime sequence on ``args`` (one array per runtime_sequence argument; outputs are
        overwritten).  Returns ``args``."""
        mod = self.mod
        if len(args) != len(mod.args):
            raise EmulationError(f"the design takes {len(mod.args)} arguments, got {len(args)}")
        host = []
        for a, mr in zip(args, mod.args):
            b = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            if b.size != mr.nbytes:
                raise EmulationError(f"argument of {b.size} bytes for {mr}")
            host.append(b)
        cores = {c.tile: self._core(c) for c in mod.cores}
        waiting = {t: None for t in cores}
        pending: dict[str, deque] = {}      # S2MM (to host) transfers per fifo, in issue order

        def settle():
            while True:
                before = self.steps
                self._forward_links()
                for t, g in list(cores.items()):
                    try:
                        waiting[t] = next(g)
                    except StopIteration:
                        del cores[t]
                        waiting.pop(t)
                self._drain(pending, host)
                if self.steps == before:
                    return

        for op in mod.seq:
            if isinstance(op, Dma):
                fifo = self.fifos[op.fifo]
                mr = mod.args[op.arg]
                if any(op.offsets[:3]):
                    raise EmulationError(f"line {op.line}: only the innermost offset is emulated")
                idx = _bytes_of(access_indices(op.sizes, op.strides, op.offsets[3]), mr.elem_bytes)
                if idx.max() >= host[op.arg].size or idx.min() < 0:
                    raise EmulationError(f"line {op.line}: access pattern leaves argument %arg{op.arg}")
                if tile_kind(fifo.f.producer) == "shim":
                    self._deliver_from_shim(fifo, host[op.arg][idx])
                else:
                    pending.setdefault(op.fifo, deque()).append([op, idx, 0, bytearray()])
            elif isinstance(op, Wait):
                settle()
                q = pending.get(op.fifo)
                if not q:
                    raise EmulationError(f"line {op.line}: dma_wait on @{op.fifo} with no transfer to wait for")
                if q[0][2] < q[0][1].size:
                    raise EmulationError(
                        f"line {op.line}: dma_wait on @{op.fifo} never completes: the transfer got {q[0][2]} of "
                        f"{q[0][1].size} bytes; cores wait: {self._blocked(waiting)}")
                q.popleft()
            settle()
        left = [n for n, q in pending.items() if q]
        if left:
            raise EmulationError(f"transfers to the host on {', '.join('@' + n for n in left)} were never waited for")
        extra = [f"@{n} -> {c}" for n, f in self.fifos.items() for c, q in f.queues.items() if q]
        extra += [f"@{n} (partial object)" for n, f in self.fifos.items() if f.inbox]
        if extra:
            raise EmulationError(f"data left unconsumed at the end: {', '.join(extra)}")
        return args

    def _drain(self, pending, host) -> None:
        """Shim S2MM: move arrived objects of fifos consumed by a shim into the host transfers."""
        for name, f in self.fifos.items():
            for tile, q in f.queues.items():
                if tile_kind(tile) != "shim":
                    continue
                while q:
                    transfers = [t for t in pending.get(name, ()) if t[2] < t[1].size]
                    if not transfers:
                        break
                    t = transfers[0]
                    data = q.popleft()
                    take = min(data.size, t[1].size - t[2])
                    host[t[0].arg][t[1][t[2]:t[2] + take]] = data[:take]
                    t[2] += take
                    self.steps += 1
                    if take < data.size:
                        raise EmulationError(f"@{name}: an object of {data.size} bytes straddles two host transfers")

    @staticmethod
    def _blocked(waiting) -> str:
        return "; ".join(f"core ({t[0]},{t[1]}) {w}" for t, w in waiting.items() if w) or "none"


def emulate(text: str, kind: str, args: list[np.ndarray], probe: bool = False) -> list[np.ndarray]:
    return Emulator(text, kind, probe).run(args)
