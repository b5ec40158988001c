"""A recording stand-in for ``pyxrt`` (XRT's Python binding), for the tests only.

It implements the calls the pinned release's host code makes (python/utils/xrt.py) and records each one.
Buffer objects keep a host copy and a device copy: ``write``/``read`` touch the host copy, ``sync`` copies
between them, so a backend that forgets a sync sees stale data.  When a kernel runs, its outputs are
computed by the design emulator (gen/npu/emulate.py) from the device copies of its arguments — the
stand-in plays the NPU; the backend's host logic (layouts, argument order, groups, syncs, instruction
loading) is what the tests check.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from gemforge.gen.npu import emulate

calls: list[tuple] = []          # every call, in order
designs: dict[str, dict] = {}    # kernel name -> {"mlir": text, "kind": "gemm" | "gemv"}
fail_next_run = False


def reset():
    global fail_next_run
    calls.clear()
    designs.clear()
    fail_next_run = False


class xclBOSyncDirection:
    XCL_BO_SYNC_BO_TO_DEVICE = "to_device"
    XCL_BO_SYNC_BO_FROM_DEVICE = "from_device"


class ert_cmd_state:
    ERT_CMD_STATE_COMPLETED = "completed"
    ERT_CMD_STATE_ERROR = "error"


class device:
    def __init__(self, index):
        calls.append(("device", index))

    def register_xclbin(self, xb):
        calls.append(("register_xclbin", xb.path))


class xclbin:
    """The file is JSON here: {"uuid": ..., "kernels": [names]}."""

    def __init__(self, path):
        self.path = path
        self.meta = json.loads(open(path).read())
        calls.append(("xclbin", path))

    def get_kernels(self):
        return [SimpleNamespace(get_name=(lambda n=n: n)) for n in self.meta["kernels"]]

    def get_uuid(self):
        return self.meta["uuid"]


class hw_context:
    def __init__(self, dev, uuid):
        self.uuid = uuid
        calls.append(("hw_context", uuid))


class _Run:
    def __init__(self, state):
        self.state = state

    def wait(self):
        calls.append(("wait",))
        return self.state


class kernel:
    def __init__(self, context, name):
        self.name = name
        calls.append(("kernel", context.uuid, name))

    def group_id(self, i):
        return (self.name, i)

    def __call__(self, opcode, insts, n_insts, *args):
        global fail_next_run
        calls.append(("run", self.name, opcode, insts, n_insts, args))
        if fail_next_run:
            fail_next_run = False
            return _Run(ert_cmd_state.ERT_CMD_STATE_ERROR)
        d = designs[self.name]
        emulate.emulate(d["mlir"], d["kind"], [a.device_mem for a in args])
        return _Run(ert_cmd_state.ERT_CMD_STATE_COMPLETED)


class bo:
    host_only = "host_only"
    cacheable = "cacheable"

    def __init__(self, dev, size, flags, group):
        self.size, self.flags, self.group = size, flags, group
        self.host_mem = np.zeros(size, np.uint8)
        self.device_mem = np.full(size, 0xAB, np.uint8)
        calls.append(("bo", size, flags, group))

    def write(self, data, offset):
        data = np.asarray(data)
        assert data.dtype == np.uint8, "pyxrt writes bytes"
        self.host_mem[offset:offset + data.size] = data
        calls.append(("write", self, offset, data.size))

    def read(self, size, offset):
        calls.append(("read", self, offset, size))
        return self.host_mem[offset:offset + size].copy()

    def sync(self, direction):
        calls.append(("sync", self, direction))
        if direction == xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE:
            self.device_mem[:] = self.host_mem
        else:
            self.host_mem[:] = self.device_mem
