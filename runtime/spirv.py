"""What a compute kernel's SPIR-V asks of a device, read from the module itself.

``workgroup_bytes``: the shared (Workgroup storage class) memory its variables take, summed from their
types (scalars, vectors, arrays of constant length, structs; no padding: a lower bound of what a driver
allocates). The runtime compares it with the device's maxComputeSharedMemorySize before it builds a
pipeline, so a kernel that cannot fit is one clear error (the tuner drops such candidates) rather than
a driver failure, and the cooperative-matrix choice needs no copy of its spec's shared-memory formula.
"""
from __future__ import annotations

import struct

from .errors import GemforgeError

MAGIC = 0x07230203
OP_TYPE_BOOL, OP_TYPE_INT, OP_TYPE_FLOAT, OP_TYPE_VECTOR, OP_TYPE_MATRIX = 20, 21, 22, 23, 24
OP_TYPE_ARRAY, OP_TYPE_STRUCT, OP_TYPE_POINTER, OP_CONSTANT, OP_VARIABLE = 28, 30, 32, 43, 59
WORKGROUP = 4        # StorageClass Workgroup


def workgroup_bytes(spirv: bytes, name: str = "kernel") -> int:
    """Bytes of shared memory the module's Workgroup variables take (see the module doc)."""
    if len(spirv) < 20 or len(spirv) % 4:
        raise GemforgeError(f"{name}: {len(spirv)} bytes is not a SPIR-V module", "run `make kernels` again")
    words = struct.unpack(f"<{len(spirv) // 4}I", spirv)
    if words[0] != MAGIC:
        raise GemforgeError(f"{name}: not a SPIR-V module (magic {words[0]:#x})", "run `make kernels` again")
    size: dict[int, int] = {}          # type id -> bytes
    const: dict[int, int] = {}         # 32-bit integer constant id -> value
    pointee: dict[int, tuple[int, int]] = {}   # pointer type id -> (storage class, type id)
    total, i = 0, 5
    while i < len(words):
        n, op = words[i] >> 16, words[i] & 0xFFFF
        if n == 0:
            raise GemforgeError(f"{name}: malformed SPIR-V (an instruction of length 0)", "run `make kernels` again")
        a = words[i + 1:i + n]
        if op == OP_TYPE_BOOL:
            size[a[0]] = 4
        elif op in (OP_TYPE_INT, OP_TYPE_FLOAT):
            size[a[0]] = a[1] // 8
        elif op in (OP_TYPE_VECTOR, OP_TYPE_MATRIX):
            size[a[0]] = size.get(a[1], 0) * a[2]
        elif op == OP_TYPE_ARRAY:
            size[a[0]] = size.get(a[1], 0) * const.get(a[2], 0)
        elif op == OP_TYPE_STRUCT:
            size[a[0]] = sum(size.get(m, 0) for m in a[1:])
        elif op == OP_TYPE_POINTER:
            pointee[a[0]] = (a[1], a[2])
        elif op == OP_CONSTANT and len(a) == 3:
            const[a[1]] = a[2]
        elif op == OP_VARIABLE and a[2] == WORKGROUP:
            total += size.get(pointee.get(a[0], (0, 0))[1], 0)
        i += n
    return total
