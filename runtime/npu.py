"""The XRT backend for the Phoenix NPU (npu1), shaped like runtime/vulkan.py: Device, Buffer, Program, Recording.

The calling convention is the pinned mlir-aie release's (gen/npu/pin.py, python/utils/xrt.py there):

    device  = pyxrt.device(0)
    xclbin  = pyxrt.xclbin(path);  device.register_xclbin(xclbin)
    context = pyxrt.hw_context(device, xclbin.get_uuid())          # one per xclbin: every design is a kernel in it
    kernel  = pyxrt.kernel(context, name)
    insts   = pyxrt.bo(device, 4 * n, pyxrt.bo.cacheable, kernel.group_id(1))     # the instruction stream
    arg i   = pyxrt.bo(device, nbytes, pyxrt.bo.host_only, kernel.group_id(3 + i))
    run     = kernel(3, insts, n, arg0, arg1, arg2);  run.wait() == ERT_CMD_STATE_COMPLETED

Nothing here has run on an NPU: the tests drive it with a recording stand-in for pyxrt (tests/npu).
Without pyxrt or without the device node it raises one DeviceError naming everything that is missing.
``W8A8Linear`` packs weights and activations in the designs' layouts (gen/npu/layout.py, the contract
shared with the kernels like the manifest) and unpacks the output.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from gemforge.gen import manifest as mf
from gemforge.gen.npu import pin

from .errors import DeviceError, GemforgeError
from .paths import build_dir as default_build_dir


def _pyxrt():
    try:
        import pyxrt
    except ImportError:
        return None
    return pyxrt


def _module_loaded() -> bool | None:
    """Whether the amdxdna kernel module is loaded (None when this is not Linux)."""
    if not Path("/sys/module").is_dir():
        return None
    return Path("/sys/module/amdxdna").is_dir()


def missing_runtime() -> list[str]:
    """What this machine lacks to run NPU kernels, one line each (empty: nothing)."""
    out = []
    if _pyxrt() is None:
        out.append(f"pyxrt (XRT's Python binding) is not importable: {pin.INSTALL_XRT}")
    if not os.path.exists(pin.DEVICE_NODE):
        drv = _module_loaded()
        why = "the amdxdna driver is not loaded" if drv is False else "no NPU device"
        out.append(f"{pin.DEVICE_NODE} does not exist ({why}): the NPU needs a Ryzen AI (Phoenix / Hawk Point) "
                   "machine with the amdxdna driver and XRT")
    return out


def npu_status() -> list[tuple[bool | None, str, str, str]]:
    """(ok, what, detail, fix) lines for `gemforge doctor`: True ok, False missing, None information."""
    from gemforge.gen.npu import toolchain
    tc = toolchain.find()
    out: list[tuple[bool | None, str, str, str]] = [
        (None, "npu toolchain pin", f"mlir-aie {pin.MLIR_AIE_RELEASE} ({pin.MLIR_AIE_COMMIT[:12]}), Peano "
                                    f"{pin.PEANO_WHEEL_URL.rsplit('/', 1)[-1].split('-py3')[0]}", ""),
        (bool(tc.aiecc), "aiecc.py (mlir-aie)", tc.aiecc or "not found (NPU designs are rendered and checked, "
                                                              "not compiled)", pin.INSTALL_MLIR_AIE),
        (bool(tc.peano), "Peano (llvm-aie)", str(tc.peano) if tc.peano else "not found", pin.INSTALL_PEANO),
    ]
    x = _pyxrt()
    out.append((x is not None, "pyxrt", getattr(x, "__file__", "importable") if x else "not importable",
                pin.INSTALL_XRT))
    node = os.path.exists(pin.DEVICE_NODE)
    drv = _module_loaded()
    out.append((node, "NPU device", pin.DEVICE_NODE + (" present" if node else
                " missing" + (" (amdxdna driver not loaded)" if drv is False else "")),
                "a Ryzen AI (Phoenix / Hawk Point) machine with the amdxdna driver: " + pin.INSTALL_XRT))
    try:
        arts = [a for a in mf.load(default_build_dir()).artifacts.values() if a.target == "npu"]
    except GemforgeError:
        arts = []
    compiled = sum(bool(a.extra.get("compiled")) for a in arts)
    out.append((None, "npu build", f"{len(arts)} NPU designs in the build, {compiled} compiled"
                if arts else "no NPU designs built (`gemforge kernels --target npu`)", ""))
    return out


def _require_runtime() -> None:
    missing = missing_runtime()
    if missing:
        raise DeviceError("cannot use the NPU: " + "; ".join(missing),
                          "run on the NPU machine, or use --placement vulkan")


def read_insts(path: Path) -> np.ndarray:
    """An instruction stream as uint32 words (.bin: raw little-endian words; .txt: one hex word a line)."""
    path = Path(path)
    try:
        if path.suffix == ".txt":
            return np.array([int(w, 16) for w in path.read_text().split()], np.uint32)
        data = path.read_bytes()
    except (OSError, ValueError) as e:
        raise GemforgeError(f"cannot read the NPU instruction stream {path}: {e}",
                            "run `gemforge kernels --target npu` on a machine with the toolchain") from None
    if len(data) % 4 or not data:
        raise GemforgeError(f"{path}: {len(data)} bytes is not a stream of 32-bit instructions",
                            "rebuild it with `gemforge kernels --target npu`")
    return np.frombuffer(data, np.uint32)


class Buffer:
    """One XRT buffer object in host memory the NPU reads and writes (``bo.host_only``)."""

    def __init__(self, device: "Device", nbytes: int, name: str = "", group: int = pin.XRT_FIRST_ARG_GROUP):
        xrt = device.xrt
        self.device, self.nbytes, self.name = device, int(nbytes), name
        self.bo = xrt.bo(device.device, self.nbytes, xrt.bo.host_only, device.group_id(group))

    def write(self, data, offset: int = 0) -> None:
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if offset + raw.size > self.nbytes:
            raise GemforgeError(f"NPU buffer '{self.name}': writing {raw.size} bytes at {offset} overflows "
                                f"its {self.nbytes} bytes")
        self.bo.write(raw, offset)
        self.bo.sync(self.device.xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE)

    def read(self, dtype=np.float32, count: int | None = None, offset: int = 0) -> np.ndarray:
        dt = np.dtype(dtype)
        nbytes = (count * dt.itemsize) if count is not None else self.nbytes - offset
        self.bo.sync(self.device.xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_FROM_DEVICE)
        return np.asarray(self.bo.read(nbytes, offset)).view(np.uint8).view(dt).copy()


class Program:
    """One design: its kernel in the device's xclbin and its instruction stream."""

    def __init__(self, device: "Device", artifact: mf.Artifact, build_dir: Path):
        xrt = device.xrt
        entry = artifact.extra.get("xclbins", {}).get(device.model)
        if not artifact.extra.get("compiled") or entry is None:
            raise DeviceError(f"NPU design {artifact.name} is not compiled into {device.xclbin_path.name}",
                              "run `gemforge kernels --target npu` on a machine with mlir-aie and Peano")
        if entry["kernel"] not in device.kernel_names:
            raise DeviceError(f"{device.xclbin_path} has no kernel {entry['kernel']} (it has "
                              f"{', '.join(device.kernel_names)})", "rebuild with `gemforge kernels --target npu`")
        self.device, self.artifact, self.name = device, artifact, entry["kernel"]
        self.kernel = xrt.kernel(device.context, self.name)
        insts = read_insts(Path(build_dir) / artifact.extra["insts"])
        self.n_insts = int(insts.size)
        self.insts = xrt.bo(device.device, insts.nbytes, xrt.bo.cacheable, self.kernel.group_id(pin.XRT_INSTR_GROUP))
        self.insts.write(insts.view(np.uint8), 0)
        self.insts.sync(xrt.xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE)
        self.bindings = [b["name"] for b in sorted(artifact.bindings, key=lambda b: b["binding"])]

    def start(self, buffers: Mapping[str, Buffer]):
        """Launch once: opcode 3, the instructions, their count, then the arguments in binding order."""
        missing = [n for n in self.bindings if n not in buffers]
        extra = sorted(set(buffers) - set(self.bindings))
        if missing or extra:
            raise GemforgeError(f"NPU design {self.artifact.name} takes buffers {self.bindings}; "
                                f"missing {missing}, unknown {extra}")
        return self.kernel(pin.XRT_OPCODE, self.insts, self.n_insts, *[buffers[n].bo for n in self.bindings])


class Recording:
    """Launches in order; ``submit`` runs them one after another and waits for each."""

    def __init__(self, device: "Device"):
        self.device = device
        self.calls: list[tuple[Program, dict]] = []

    def dispatch(self, program: Program, buffers: Mapping[str, Buffer], push=None, groups=None) -> None:
        if push:
            raise GemforgeError(f"NPU design {program.artifact.name} takes no push constants, got {sorted(push)}")
        self.calls.append((program, dict(buffers)))

    def submit(self, wait: bool = True) -> "Recording":
        done = self.device.xrt.ert_cmd_state.ERT_CMD_STATE_COMPLETED
        for program, buffers in self.calls:
            state = program.start(buffers).wait()
            if state != done:
                raise DeviceError(f"NPU kernel {program.name} ended in state {state}",
                                  "check `xrt-smi examine` and dmesg for amdxdna errors")
        return self


class Device:
    """The NPU with one xclbin (one hardware context, every design of a model as a kernel in it)."""

    def __init__(self, xclbin: Path | str, index: int = 0):
        _require_runtime()
        self.xrt = _pyxrt()
        self.xclbin_path = Path(xclbin)
        if not self.xclbin_path.is_file():
            raise DeviceError(f"no xclbin at {self.xclbin_path}",
                              "run `gemforge kernels --target npu` on a machine with mlir-aie and Peano")
        self.model = self.xclbin_path.stem
        self.device = self.xrt.device(index)
        self.xclbin = self.xrt.xclbin(str(self.xclbin_path))
        self.kernel_names = [k.get_name() for k in self.xclbin.get_kernels()]
        if not self.kernel_names:
            raise DeviceError(f"{self.xclbin_path} holds no kernels", "rebuild it")
        self.device.register_xclbin(self.xclbin)
        self.context = self.xrt.hw_context(self.device, self.xclbin.get_uuid())
        self._group_kernel = None

    def group_id(self, group: int):
        """Buffer objects need a kernel's memory group; every kernel's argument groups are host memory."""
        if self._group_kernel is None:
            self._group_kernel = self.xrt.kernel(self.context, self.kernel_names[0])
        return self._group_kernel.group_id(group)

    def buffer(self, nbytes: int, name: str = "", host: bool = True) -> Buffer:
        return Buffer(self, nbytes, name)

    def upload(self, array: np.ndarray, name: str = "") -> Buffer:
        raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        buf = self.buffer(raw.size, name)
        buf.write(raw)
        return buf

    def program(self, artifact: mf.Artifact, build_dir: Path | None = None) -> Program:
        return Program(self, artifact, Path(build_dir or default_build_dir()))

    def record(self, timestamps: bool = False, label: str = "") -> Recording:
        return Recording(self)

    def close(self) -> None:
        self.context = self.device = None


class W8A8Linear:
    """y = x @ W.T on the NPU for one weight matrix: W packed once, x quantized per call (host side here;
    the phoenix placement does it on the iGPU)."""

    def __init__(self, device: Device, artifact: mf.Artifact, w: np.ndarray, build_dir: Path | None = None,
                 name: str = ""):
        from gemforge.gen.npu import layout
        from gemforge.gen.npu.design import Tiling
        self.layout = layout
        vals = {k: v for k, v in artifact.values.items() if k != "requested"}
        self.t = Tiling(**vals)
        if w.shape != (self.t.N, self.t.K):
            raise GemforgeError(f"{artifact.name} takes W [{self.t.N}, {self.t.K}], got {list(w.shape)}")
        self.program = device.program(artifact, build_dir)
        self.device = device
        self.wf = np.asarray(w, np.float32)
        self.w = device.upload(layout.pack_weight(w, self.t), name or "w")
        self.x = device.buffer(self.t.M * self.t.Kp, "x")
        self.y = device.buffer(self.t.M * self.t.N * (4 if self.t.out == "f32" else 2), "y")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        t = self.t
        x = np.asarray(x, np.float32)
        if x.size != t.M * t.K:
            raise GemforgeError(f"{self.program.artifact.name} takes x with {t.M} x {t.K} values, got {x.shape}")
        self.x.write(self.layout.pack_activations(x, t))
        rec = self.device.record()
        rec.dispatch(self.program, {"x": self.x, "w": self.w, "y": self.y})
        rec.submit()
        y = self.y.read(np.float32 if t.out == "f32" else np.uint16)
        if t.out == "bf16":
            y = (y.astype(np.uint32) << 16).view(np.float32)
        return y.reshape((t.M, t.N) if t.kind == "gemm" else (t.N,))


def check_designs(model: str, build_dir: Path | None = None, seed: int = 0) -> list[tuple[str, int, bool, float]]:
    """Run every compiled NPU design of ``model`` once on the NPU with random data and compare it with the
    numpy W8A8 reference: [(design, outputs, bit-identical, max |error| / max |reference|)].  The int32
    accumulation is exact by design; the requantization uses the AIE's fp32 multiply, whose rounding we could
    not check against IEEE without the hardware.  Raises DeviceError without an NPU."""
    from gemforge.gen.npu import layout
    bd = Path(build_dir or default_build_dir())
    m = mf.load(bd)
    arts = [a for a in m.artifacts.values() if a.target == "npu" and model in a.extra.get("xclbins", {})]
    if not arts:
        raise GemforgeError(f"no compiled NPU designs for {model} in {bd}",
                            "run `gemforge kernels --target npu` on a machine with mlir-aie and Peano")
    dev = Device(bd / arts[0].extra["xclbins"][model]["file"])
    rng = np.random.default_rng(seed)
    out = []
    for a in sorted(arts, key=lambda a: a.name):
        lin = W8A8Linear(dev, a, rng.standard_normal((a.axes["N"], a.axes["K"])).astype(np.float32) * 0.05, bd)
        x = rng.standard_normal((a.axes["M"], a.axes["K"])).astype(np.float32)
        got = lin(x).reshape(-1)
        want = layout.w8a8_reference(x, lin.wf, lin.t.out).reshape(-1)
        if lin.t.out == "bf16":
            want = (want.astype(np.uint32) << 16).view(np.float32)
        rel = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))
        out.append((a.name, int(got.size), bool(np.array_equal(got.view(np.uint32), want.view(np.uint32))), rel))
    return out
