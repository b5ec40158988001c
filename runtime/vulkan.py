"""The Vulkan backend: device, buffers, programs, recordings.

One compute queue; buffers are device-local (mapped directly when the memory is
also host-visible, as on lavapipe and most integrated GPUs, else written and read
through a staging buffer); programs come from manifest artifacts with an on-disk
pipeline cache; a ``Recording`` holds many dispatches with barriers between them
in one command buffer, may be submitted again and again (decode), and can time
every dispatch with GPU timestamps.
"""
from __future__ import annotations

import atexit
import os
import struct
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import DeviceError, GemforgeError
from .spirv import workgroup_bytes

try:
    import vulkan as vk
except (ImportError, OSError) as _e:  # the loader library (libvulkan1) is missing
    vk = None
    _IMPORT_ERROR = str(_e)

TYPE_NAMES = {0: "other", 1: "integrated GPU", 2: "discrete GPU", 3: "virtual GPU", 4: "CPU (software)"}
# Preference: discrete, integrated, virtual, then software.
TYPE_RANK = {2: 0, 1: 1, 3: 2, 0: 3, 4: 4}


def _require_vk():
    if vk is None:
        raise DeviceError(f"the Vulkan loader could not be loaded ({_IMPORT_ERROR})",
                          "install it: `sudo apt-get install libvulkan1 mesa-vulkan-drivers` (or `make setup`)")


def _vkcall(what: str, fn, *args, device_name: str = "", size: int | None = None):
    """Call a Vulkan function, turning its errors into DeviceError with the device and size."""
    try:
        return fn(*args)
    except (vk.VkErrorOutOfDeviceMemory, vk.VkErrorOutOfHostMemory) as e:
        kind = "device" if isinstance(e, vk.VkErrorOutOfDeviceMemory) else "host"
        sz = f" asking for {size / 2**20:.1f} MiB" if size is not None else ""
        raise DeviceError(f"{device_name}: out of {kind} memory in {what}{sz}",
                          "use a smaller model, a smaller weight format (--weights q4_0) or a shorter context") from None
    except vk.VkErrorDeviceLost:
        raise DeviceError(f"{device_name}: device lost during {what}",
                          "the GPU driver reset the device; a kernel may have run too long or faulted") from None
    except vk.VkError as e:
        raise DeviceError(f"{device_name}: {what} failed with {type(e).__name__}") from None


# GEMFORGE_FULL_BARRIERS=1: every barrier between dispatches also covers transfers (the behaviour before
# compute-only barriers; for A/B timing runs)
FULL_BARRIERS = os.environ.get("GEMFORGE_FULL_BARRIERS", "") not in ("", "0")


def spin_seconds(info: "DeviceInfo") -> float:
    """How long a wait polls before it blocks (Device.SPIN_S on hardware, 0 on a software device), or
    GEMFORGE_SPIN_MS where set (0: block at once, e.g. to spare a laptop's battery)."""
    text = os.environ.get("GEMFORGE_SPIN_MS")
    if text is None:
        return 0.0 if info.is_software else Device.SPIN_S
    try:
        ms = float(text)
    except ValueError:
        ms = -1.0
    if not 0.0 <= ms <= 1e4:
        raise GemforgeError(f"GEMFORGE_SPIN_MS={text!r} is not a number of milliseconds in 0..10000",
                            "unset it (poll 20 ms on hardware), or set 0 to block at once")
    return ms / 1e3


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    type: int
    driver: str
    api_version: str
    max_storage_buffer_range: int
    max_allocation_size: int
    max_shared_memory: int
    max_workgroup_size: int
    max_workgroup_count: tuple[int, int, int]
    max_push_constants: int
    subgroup_size: int
    timestamp_period: float
    min_storage_offset_alignment: int
    device_local_bytes: int
    shader_int8: bool
    shader_float16: bool
    storage_8bit: bool
    storage_16bit: bool
    extensions: frozenset = field(default_factory=frozenset, repr=False)
    vulkan_memory_model: bool = False
    # KHR cooperative matrix: the extension with its feature bit, and the subgroup-scope shapes
    # (M, N, K, A type, C type) the driver lists, e.g. (16, 16, 16, 'f16', 'f32')
    cooperative_matrix: bool = False
    coopmat_shapes: tuple = ()
    # VK_KHR_shader_integer_dot_product (core in Vulkan 1.3) with its feature bit: SPIR-V OpSDot/OpSUDot
    integer_dot: bool = False

    @property
    def features(self) -> frozenset:
        """The spec-level device features (gen/spec.py DEVICE_FEATURES) this device has."""
        f = set()
        if (self.cooperative_matrix and self.vulkan_memory_model and self.shader_float16
                and (16, 16, 16, "f16", "f32") in self.coopmat_shapes):
            f.add("cooperative_matrix")
        if self.shader_float16 and self.storage_16bit:
            f.add("float16")
        if self.shader_int8 and self.storage_8bit:
            f.add("int8")
        if self.subgroup_size == 32:
            f.add("subgroup32")
        if self.integer_dot:
            f.add("int_dot")
        return frozenset(f)

    @property
    def is_software(self) -> bool:
        return self.type == 4 or any(s in self.name.lower() for s in ("llvmpipe", "lavapipe", "swiftshader"))

    @property
    def kind(self) -> str:
        return "software rasterizer" if self.is_software else "hardware"

    @property
    def max_buffer_bytes(self) -> int:
        """The largest single buffer a kernel can bind (tensors beyond this are split)."""
        return min(self.max_storage_buffer_range, self.max_allocation_size)

    @property
    def key(self) -> str:
        """A short device key for tuning files: 'nvidia-h200', 'llvmpipe', ..."""
        import re
        n = self.name.lower()
        for drop in ("amd ", "(tm)", "graphics", "(radv"):
            n = n.replace(drop, " ")
        n = re.sub(r"\(.*", "", n)
        n = re.sub(r"[^a-z0-9]+", "-", n).strip("-")
        return n or "unknown"

    def describe(self) -> str:
        return f"{self.name} ({TYPE_NAMES.get(self.type, 'unknown')}, {self.kind})"


_INSTANCE = None


def _instance():
    global _INSTANCE
    _require_vk()
    if _INSTANCE is None:
        app = vk.VkApplicationInfo(sType=vk.VK_STRUCTURE_TYPE_APPLICATION_INFO, pApplicationName="gemforge",
                                   applicationVersion=1, pEngineName="gemforge", engineVersion=1,
                                   apiVersion=vk.VK_MAKE_VERSION(1, 2, 0))
        info = vk.VkInstanceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo=app)
        try:
            _INSTANCE = vk.vkCreateInstance(info, None)
        except vk.VkErrorIncompatibleDriver:
            raise DeviceError("no Vulkan driver is installed (vkCreateInstance: incompatible driver)",
                              "install one: `sudo apt-get install mesa-vulkan-drivers` for lavapipe/RADV, or your GPU vendor's driver") from None
        except vk.VkError as e:
            raise DeviceError(f"vkCreateInstance failed with {type(e).__name__}") from None
    return _INSTANCE


def _version(v: int) -> str:
    return f"{v >> 22}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


_COMPONENT = {0: "f16", 1: "f32", 2: "f64", 3: "s8", 4: "s16", 5: "s32", 6: "s64", 7: "u8", 8: "u16", 9: "u32",
              10: "u64", 1000141000: "bf16"}


INTEGER_DOT_EXT = "VK_KHR_shader_integer_dot_product"


def _coopmat_shapes(pd) -> tuple:
    """Subgroup-scope KHR cooperative-matrix shapes as (M, N, K, A type, C type); () if not queryable."""
    try:
        fn = vk.vkGetInstanceProcAddr(_instance(), "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR")
        props = fn(pd)
    except (vk.ProcedureNotFoundError, vk.VkError):  # no entry point, or the query failed: no cooperative matrix
        return ()
    out = set()
    for p in props:
        if int(p.scope) == vk.VK_SCOPE_SUBGROUP_KHR and int(p.AType) == int(p.BType):
            out.add((int(p.MSize), int(p.NSize), int(p.KSize), _COMPONENT.get(int(p.AType), str(p.AType)),
                     _COMPONENT.get(int(p.CType), str(p.CType))))
    return tuple(sorted(out, key=str))


def _info(index: int, pd) -> DeviceInfo:
    props = vk.vkGetPhysicalDeviceProperties(pd)
    m3 = vk.VkPhysicalDeviceMaintenance3Properties(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES)
    sg = vk.VkPhysicalDeviceSubgroupProperties(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES, pNext=m3)
    drv = vk.VkPhysicalDeviceDriverProperties(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES, pNext=sg)
    p2 = vk.VkPhysicalDeviceProperties2(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, pNext=drv)
    vk.vkGetPhysicalDeviceProperties2(pd, p2)
    exts = frozenset(e.extensionName for e in vk.vkEnumerateDeviceExtensionProperties(pd, None))
    has_cm = "VK_KHR_cooperative_matrix" in exts
    fcm = vk.VkPhysicalDeviceCooperativeMatrixFeaturesKHR(
        sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR) if has_cm else None
    has_dot = INTEGER_DOT_EXT in exts
    fdot = vk.VkPhysicalDeviceShaderIntegerDotProductFeatures(
        sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES,
        pNext=fcm if has_cm else vk.ffi.NULL) if has_dot else None
    f12 = vk.VkPhysicalDeviceVulkan12Features(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                              pNext=fdot if has_dot else (fcm if has_cm else vk.ffi.NULL))
    f11 = vk.VkPhysicalDeviceVulkan11Features(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, pNext=f12)
    f2 = vk.VkPhysicalDeviceFeatures2(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, pNext=f11)
    vk.vkGetPhysicalDeviceFeatures2(pd, f2)
    cm = bool(has_cm and fcm.cooperativeMatrix)
    dot = bool(has_dot and fdot.shaderIntegerDotProduct)
    mem = vk.vkGetPhysicalDeviceMemoryProperties(pd)
    local = sum(mem.memoryHeaps[i].size for i in range(mem.memoryHeapCount)
                if mem.memoryHeaps[i].flags & vk.VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
    lim = props.limits
    drv_name = vk.ffi.string(drv.driverName).decode(errors="replace")
    drv_info = vk.ffi.string(drv.driverInfo).decode(errors="replace")
    return DeviceInfo(
        index=index, name=props.deviceName, type=int(props.deviceType),
        driver=f"{drv_name} {drv_info}".strip(), api_version=_version(props.apiVersion),
        max_storage_buffer_range=int(lim.maxStorageBufferRange), max_allocation_size=int(m3.maxMemoryAllocationSize),
        max_shared_memory=int(lim.maxComputeSharedMemorySize), max_workgroup_size=int(lim.maxComputeWorkGroupInvocations),
        max_workgroup_count=tuple(int(x) for x in lim.maxComputeWorkGroupCount),
        max_push_constants=int(lim.maxPushConstantsSize), subgroup_size=int(sg.subgroupSize),
        timestamp_period=float(lim.timestampPeriod),
        min_storage_offset_alignment=int(lim.minStorageBufferOffsetAlignment), device_local_bytes=int(local),
        shader_int8=bool(f12.shaderInt8), shader_float16=bool(f12.shaderFloat16),
        storage_8bit=bool(f12.storageBuffer8BitAccess), storage_16bit=bool(f11.storageBuffer16BitAccess),
        extensions=exts, vulkan_memory_model=bool(f12.vulkanMemoryModel), cooperative_matrix=cm,
        coopmat_shapes=_coopmat_shapes(pd) if cm else (), integer_dot=dot)


def list_devices() -> list[DeviceInfo]:
    inst = _instance()
    return [_info(i, pd) for i, pd in enumerate(vk.vkEnumeratePhysicalDevices(inst))]


def choose_device(index: int | None = None, require_hardware: bool = False) -> DeviceInfo:
    """The best hardware GPU (discrete, then integrated); software only when no hardware GPU exists."""
    devs = list_devices()
    if not devs:
        raise DeviceError("no Vulkan device found",
                          "install a driver: `sudo apt-get install mesa-vulkan-drivers` (lavapipe, software) or your GPU's")
    if index is not None:
        if not 0 <= index < len(devs):
            raise DeviceError(f"--device {index}: there are {len(devs)} Vulkan devices "
                              f"({', '.join(f'{d.index}: {d.name}' for d in devs)})")
        pick = devs[index]
    else:
        pick = sorted(devs, key=lambda d: (d.is_software, TYPE_RANK.get(d.type, 9), d.index))[0]
    if require_hardware and pick.is_software:
        raise DeviceError(f"only a software Vulkan device is available ({pick.name}) and --require-hardware was given",
                          "install your GPU's Vulkan driver (Mesa RADV for AMD: `sudo apt-get install mesa-vulkan-drivers`)")
    return pick


class Buffer:
    """A device buffer. ``nbytes`` may not exceed the device's max_buffer_bytes (see ``split_rows``)."""

    def __init__(self, device: "Device", nbytes: int, name: str = "", host: bool = False):
        """``host=True``: host-visible memory the CPU writes directly (small control buffers read by kernels)."""
        self.device = device
        self.nbytes = int(nbytes)
        self.name = name
        alloc = max(16, (self.nbytes + 15) // 16 * 16)
        if alloc > device.info.max_buffer_bytes:
            raise DeviceError(f"{device.info.name}: buffer '{name}' of {alloc} bytes exceeds the device's "
                              f"{device.info.max_buffer_bytes} byte limit", "split the tensor (Device.split_rows)")
        self.alloc = alloc
        d = device.handle
        usage = (vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT
                 | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT)
        self.handle = _vkcall("vkCreateBuffer", vk.vkCreateBuffer, d, vk.VkBufferCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, size=alloc, usage=usage,
            sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE), None, device_name=device.info.name, size=alloc)
        req = vk.vkGetBufferMemoryRequirements(d, self.handle)
        mtype, self.host_visible = device._memory_type(req.memoryTypeBits, host=host)
        try:
            self.memory = _vkcall("vkAllocateMemory", vk.vkAllocateMemory, d, vk.VkMemoryAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, allocationSize=req.size, memoryTypeIndex=mtype), None,
                device_name=device.info.name, size=req.size)
        except DeviceError:
            vk.vkDestroyBuffer(d, self.handle, None)
            raise
        vk.vkBindBufferMemory(d, self.handle, self.memory, 0)
        self._map = vk.vkMapMemory(d, self.memory, 0, alloc, 0) if self.host_visible else None
        device._live.add(self)

    def write(self, data, offset: int = 0) -> None:
        b = memoryview(np.ascontiguousarray(data)).cast("B")
        if offset + len(b) > self.nbytes:
            raise GemforgeError(f"write of {len(b)} bytes at {offset} overflows buffer '{self.name}' ({self.nbytes} bytes)")
        if self._map is not None:
            self._map[offset:offset + len(b)] = b
        else:
            self.device._staged_write(self, b, offset)

    def read(self, dtype=np.float32, count: int | None = None, offset: int = 0) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = (self.nbytes - offset) // dtype.itemsize if count is None else count
        nb = n * dtype.itemsize
        if self._map is not None:
            return np.frombuffer(bytes(self._map[offset:offset + nb]), dtype=dtype).copy()
        return np.frombuffer(self.device._staged_read(self, nb, offset), dtype=dtype).copy()

    def destroy(self) -> None:
        if self.handle is not None:
            d = self.device.handle
            if self._map is not None:
                vk.vkUnmapMemory(d, self.memory)
                self._map = None
            vk.vkDestroyBuffer(d, self.handle, None)
            vk.vkFreeMemory(d, self.memory, None)
            self.handle = None
            self.device._live.discard(self)

    def __repr__(self):
        return f"Buffer({self.name!r}, {self.nbytes} B)"


class Program:
    """A compute pipeline made from one manifest artifact."""

    def __init__(self, device: "Device", artifact, spirv: bytes):
        self.device = device
        self.artifact = artifact
        self.name = artifact.name
        shared = workgroup_bytes(spirv, artifact.name)
        if shared > device.info.max_shared_memory:
            raise DeviceError(f"kernel {artifact.name} needs {shared} bytes of shared memory; {device.info.name} "
                              f"has {device.info.max_shared_memory}",
                              "use a variant with smaller tiles (its tuning file entry) and `make kernels`")
        d = device.handle
        nb = len(artifact.bindings)
        binds = [vk.VkDescriptorSetLayoutBinding(binding=i, descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                                  descriptorCount=1, stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT)
                 for i in range(nb)]
        self.set_layout = vk.vkCreateDescriptorSetLayout(d, vk.VkDescriptorSetLayoutCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, bindingCount=nb, pBindings=binds), None)
        ranges = ([vk.VkPushConstantRange(stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT, offset=0,
                                          size=artifact.push_size)] if artifact.push_size else [])
        self.layout = vk.vkCreatePipelineLayout(d, vk.VkPipelineLayoutCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, setLayoutCount=1, pSetLayouts=[self.set_layout],
            pushConstantRangeCount=len(ranges), pPushConstantRanges=ranges or None), None)
        self.module = vk.vkCreateShaderModule(d, vk.VkShaderModuleCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, codeSize=len(spirv), pCode=spirv), None)
        stage = vk.VkPipelineShaderStageCreateInfo(sType=vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                                                   stage=vk.VK_SHADER_STAGE_COMPUTE_BIT, module=self.module, pName="main")
        self.pipeline = _vkcall(f"creating pipeline {self.name}", vk.vkCreateComputePipelines, d, device._pipeline_cache, 1,
                                [vk.VkComputePipelineCreateInfo(sType=vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
                                                                stage=stage, layout=self.layout)], None,
                                device_name=device.info.name)[0]
        self._push_fmt = "<" + "".join({"uint": "I", "int": "i", "float": "f"}[p.type] for p in artifact.push_constants)
        self.binding_names = [b["name"] for b in artifact.bindings]

    def pack_push(self, values: Mapping[str, float | int]) -> bytes:
        names = [p.name for p in self.artifact.push_constants]
        missing = [n for n in names if n not in values]
        extra = [n for n in values if n not in names]
        if missing or extra:
            raise GemforgeError(f"program {self.name}: push constants missing {missing} / unknown {extra}")
        return struct.pack(self._push_fmt, *(values[n] for n in names))

    def destroy(self):
        d = self.device.handle
        vk.vkDestroyPipeline(d, self.pipeline, None)
        vk.vkDestroyShaderModule(d, self.module, None)
        vk.vkDestroyPipelineLayout(d, self.layout, None)
        vk.vkDestroyDescriptorSetLayout(d, self.set_layout, None)


@dataclass(frozen=True)
class View:
    """A byte range of a buffer, bound as one storage buffer (offset aligned to the device's minimum)."""
    buffer: Buffer
    offset: int
    nbytes: int


def _as_view(b) -> View:
    if isinstance(b, View):
        return b
    if isinstance(b, Buffer):
        return View(b, 0, b.alloc)
    raise GemforgeError(f"cannot bind {type(b).__name__} as a buffer")


class Recording:
    """Dispatches recorded into one command buffer, with a barrier before each that depends on the last.

    ``submit()`` runs it and waits; a recording can be submitted any number of times.
    With ``timestamps=True`` every dispatch is timed on the GPU (``times()`` after a submit).
    """

    POOL_SETS = 256

    def __init__(self, device: "Device", timestamps: bool = False, label: str = ""):
        self.device = device
        self.label = label
        d = device.handle
        self.cmd = vk.vkAllocateCommandBuffers(d, vk.VkCommandBufferAllocateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, commandPool=device._cmd_pool,
            level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=1))[0]
        vk.vkBeginCommandBuffer(self.cmd, vk.VkCommandBufferBeginInfo(sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO))
        self.pools: list = []
        self._left = 0
        self.names: list[str] = []
        self.labels: list[str] = []     # per dispatch: what it works on (default its program's name)
        self.timestamps = timestamps
        self.query_pool = None
        self._qcap = 0
        if timestamps:
            self._qcap = 4096
            self.query_pool = vk.vkCreateQueryPool(d, vk.VkQueryPoolCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, queryType=vk.VK_QUERY_TYPE_TIMESTAMP,
                queryCount=self._qcap), None)
            vk.vkCmdResetQueryPool(self.cmd, self.query_pool, 0, self._qcap)
        self._ended = False
        self._fence = vk.vkCreateFence(d, vk.VkFenceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO), None)
        self._pending_barrier = False
        device._recordings.add(self)

    def _descriptor_set(self, program: Program):
        d = self.device.handle
        if self._left == 0:
            size = vk.VkDescriptorPoolSize(type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=self.POOL_SETS * 8)
            self.pools.append(vk.vkCreateDescriptorPool(d, vk.VkDescriptorPoolCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, maxSets=self.POOL_SETS, poolSizeCount=1,
                pPoolSizes=[size]), None))
            self._left = self.POOL_SETS
        self._left -= 1
        return vk.vkAllocateDescriptorSets(d, vk.VkDescriptorSetAllocateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, descriptorPool=self.pools[-1],
            descriptorSetCount=1, pSetLayouts=[program.set_layout]))[0]

    def barrier(self, compute_only: bool = False) -> None:
        """Make all earlier shader and transfer writes visible to later shaders and transfers.
        ``compute_only``: between two dispatches, only shader writes to shader reads and writes
        (no transfer stage to wait for or make visible)."""
        src, dst = vk.VK_ACCESS_SHADER_WRITE_BIT, vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT
        stages = vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT
        if not compute_only:
            src |= vk.VK_ACCESS_TRANSFER_WRITE_BIT
            dst |= vk.VK_ACCESS_TRANSFER_READ_BIT | vk.VK_ACCESS_TRANSFER_WRITE_BIT
            stages |= vk.VK_PIPELINE_STAGE_TRANSFER_BIT
        mb = vk.VkMemoryBarrier(sType=vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER, srcAccessMask=src, dstAccessMask=dst)
        vk.vkCmdPipelineBarrier(self.cmd, stages, stages, 0, 1, [mb], 0, None, 0, None)

    def dispatch(self, program: Program, buffers: Mapping[str, Buffer | View], push: Mapping[str, float | int],
                 groups: Sequence[int], label: str | None = None) -> None:
        if self._ended:
            raise GemforgeError("recording already finished")
        gx, gy, gz = (list(groups) + [1, 1])[:3]
        limit = self.device.info.max_workgroup_count
        if not (0 < gx <= limit[0] and 0 < gy <= limit[1] and 0 < gz <= limit[2]):
            raise GemforgeError(f"{program.name}: dispatch ({gx}, {gy}, {gz}) outside the device limit {limit}")
        names = program.binding_names
        missing = [n for n in names if n not in buffers]
        extra = [n for n in buffers if n not in names]
        if missing or extra:
            raise GemforgeError(f"{program.name}: buffers missing {missing} / unknown {extra}")
        ds = self._descriptor_set(program)
        infos = []
        for n in names:
            v = _as_view(buffers[n])
            infos.append(vk.VkDescriptorBufferInfo(buffer=v.buffer.handle, offset=v.offset, range=v.nbytes))
        writes = [vk.VkWriteDescriptorSet(sType=vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, dstSet=ds, dstBinding=i,
                                          descriptorCount=1, descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                          pBufferInfo=[info]) for i, info in enumerate(infos)]
        vk.vkUpdateDescriptorSets(self.device.handle, len(writes), writes, 0, None)
        if self.names:
            self.barrier(compute_only=self.names[-1] != "copy" and not FULL_BARRIERS)
        c = self.cmd
        q = len(self.names)
        if self.timestamps:
            if 2 * q + 2 > self._qcap:
                raise GemforgeError(f"recording '{self.label}': more than {self._qcap // 2} timed dispatches")
            vk.vkCmdWriteTimestamp(c, vk.VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, self.query_pool, 2 * q)
        vk.vkCmdBindPipeline(c, vk.VK_PIPELINE_BIND_POINT_COMPUTE, program.pipeline)
        vk.vkCmdBindDescriptorSets(c, vk.VK_PIPELINE_BIND_POINT_COMPUTE, program.layout, 0, 1, [ds], 0, None)
        if program.artifact.push_size:
            data = program.pack_push(push)
            vk.vkCmdPushConstants(c, program.layout, vk.VK_SHADER_STAGE_COMPUTE_BIT, 0, len(data), vk.ffi.from_buffer(data))
        vk.vkCmdDispatch(c, gx, gy, gz)
        if self.timestamps:
            vk.vkCmdWriteTimestamp(c, vk.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, self.query_pool, 2 * q + 1)
        self.names.append(program.name)
        self.labels.append(label or program.name)

    def copy(self, src: Buffer | View, dst: Buffer | View, nbytes: int | None = None) -> None:
        s, t = _as_view(src), _as_view(dst)
        n = nbytes if nbytes is not None else min(s.nbytes, t.nbytes)
        if self.names:
            self.barrier()
        vk.vkCmdCopyBuffer(self.cmd, s.buffer.handle, t.buffer.handle, 1,
                           [vk.VkBufferCopy(srcOffset=s.offset, dstOffset=t.offset, size=n)])
        self.names.append("copy")
        self.labels.append("copy")
        if self.timestamps:  # keep query indices aligned with names
            q = len(self.names) - 1
            vk.vkCmdWriteTimestamp(self.cmd, vk.VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, self.query_pool, 2 * q)
            vk.vkCmdWriteTimestamp(self.cmd, vk.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, self.query_pool, 2 * q + 1)

    def finish(self) -> "Recording":
        if not self._ended:
            vk.vkEndCommandBuffer(self.cmd)
            self._ended = True
        return self

    def submit(self, wait: bool = True) -> "Recording":
        self.finish()
        d = self.device.handle
        vk.vkResetFences(d, 1, [self._fence])
        _vkcall("vkQueueSubmit", vk.vkQueueSubmit, self.device.queue, 1,
                [vk.VkSubmitInfo(sType=vk.VK_STRUCTURE_TYPE_SUBMIT_INFO, commandBufferCount=1,
                                 pCommandBuffers=[self.cmd])], self._fence, device_name=self.device.info.name)
        if wait:
            self.wait()
        return self

    def wait(self) -> None:
        """Until the last submit has run: first polling the fence for up to the device's ``spin_s`` seconds
        (a blocked thread is woken some tens of microseconds after the GPU finishes, which a decode step
        of a small model pays every token), then blocking."""
        spin = self.device.spin_s
        if spin > 0:
            status, d, fence = vk.lib.vkGetFenceStatus, self.device.handle, self._fence
            end = time.perf_counter() + spin
            while True:
                r = status(d, fence)
                if r == vk.VK_SUCCESS:
                    return
                if r != vk.VK_NOT_READY or time.perf_counter() > end:
                    break               # an error is reported by the blocking wait below
        _vkcall("vkWaitForFences", vk.vkWaitForFences, self.device.handle, 1, [self._fence], vk.VK_TRUE,
                2**63 - 1, device_name=self.device.info.name)

    def _timestamps(self) -> np.ndarray:
        """Seconds of the last submit's (start, end) timestamp pair of every dispatch, interleaved."""
        n = 2 * len(self.names)
        out = np.zeros(n, np.uint64)
        vk.vkGetQueryPoolResults(self.device.handle, self.query_pool, 0, n, 8 * n, vk.ffi.from_buffer(out), 8,
                                 vk.VK_QUERY_RESULT_64_BIT | vk.VK_QUERY_RESULT_WAIT_BIT)
        return out.astype(np.float64) * self.device.info.timestamp_period * 1e-9

    def times(self, labels: bool = False) -> list[tuple[str, float]]:
        """(program name, or with ``labels`` the dispatch's label, GPU seconds) per dispatch of the last submit."""
        if not self.timestamps or not self.names:
            return []
        ts = self._timestamps()
        # A top-of-pipe timestamp can be written before the barrier ahead of it has drained the
        # previous dispatch, so a dispatch's start is the later of its own top timestamp and the
        # previous dispatch's end: dispatches in a recording run one after another.
        res, prev_end = [], None
        for i, name in enumerate(self.labels if labels else self.names):
            start = ts[2 * i] if prev_end is None else max(ts[2 * i], prev_end)
            res.append((name, float(max(0.0, ts[2 * i + 1] - start))))
            prev_end = ts[2 * i + 1]
        return res

    def destroy(self) -> None:
        if self.cmd is None:
            return
        d = self.device.handle
        vk.vkFreeCommandBuffers(d, self.device._cmd_pool, 1, [self.cmd])
        for p in self.pools:
            vk.vkDestroyDescriptorPool(d, p, None)
        if self.query_pool is not None:
            vk.vkDestroyQueryPool(d, self.query_pool, None)
        vk.vkDestroyFence(d, self._fence, None)
        self.cmd = None
        self.device._recordings.discard(self)


class Device:
    """A logical Vulkan device with one compute queue."""

    # Seconds a wait for the GPU polls before it blocks (Recording.wait), on hardware; a software
    # device's work runs on this machine's cores, where polling would take one from it: 0 there.
    SPIN_S = 0.02

    def __init__(self, index: int | None = None, require_hardware: bool = False, cache_dir: Path | None = None):
        self.info = choose_device(index, require_hardware)
        self.spin_s = spin_seconds(self.info)
        inst = _instance()
        self.physical = vk.vkEnumeratePhysicalDevices(inst)[self.info.index]
        fams = vk.vkGetPhysicalDeviceQueueFamilyProperties(self.physical)
        compute = [i for i, f in enumerate(fams) if f.queueFlags & vk.VK_QUEUE_COMPUTE_BIT]
        if not compute:
            raise DeviceError(f"{self.info.name} has no compute queue")
        # Prefer a compute+graphics family (the universal queue) for timestamp support.
        self.family = compute[0]
        qinfo = vk.VkDeviceQueueCreateInfo(sType=vk.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                           queueFamilyIndex=self.family, queueCount=1, pQueuePriorities=[1.0])
        use_cm = "cooperative_matrix" in self.info.features
        use_dot = self.info.integer_dot
        fcm = vk.VkPhysicalDeviceCooperativeMatrixFeaturesKHR(
            sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR,
            cooperativeMatrix=True) if use_cm else None
        fdot = vk.VkPhysicalDeviceShaderIntegerDotProductFeatures(
            sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES,
            pNext=fcm if use_cm else vk.ffi.NULL, shaderIntegerDotProduct=True) if use_dot else None
        exts = (["VK_KHR_cooperative_matrix"] if use_cm else []) + ([INTEGER_DOT_EXT] if use_dot else [])
        f12 = vk.VkPhysicalDeviceVulkan12Features(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                                  pNext=fdot if use_dot else (fcm if use_cm else vk.ffi.NULL),
                                                  vulkanMemoryModel=self.info.vulkan_memory_model,
                                                  shaderInt8=self.info.shader_int8,
                                                  shaderFloat16=self.info.shader_float16,
                                                  storageBuffer8BitAccess=self.info.storage_8bit)
        f11 = vk.VkPhysicalDeviceVulkan11Features(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                                  pNext=f12, storageBuffer16BitAccess=self.info.storage_16bit)
        f2 = vk.VkPhysicalDeviceFeatures2(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, pNext=f11)
        self.handle = _vkcall("vkCreateDevice", vk.vkCreateDevice, self.physical, vk.VkDeviceCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, pNext=f2, queueCreateInfoCount=1, pQueueCreateInfos=[qinfo],
            enabledExtensionCount=len(exts), ppEnabledExtensionNames=exts or None),
            None, device_name=self.info.name)
        self.queue = vk.vkGetDeviceQueue(self.handle, self.family, 0)
        self._cmd_pool = vk.vkCreateCommandPool(self.handle, vk.VkCommandPoolCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, queueFamilyIndex=self.family,
            flags=vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT), None)
        mem = vk.vkGetPhysicalDeviceMemoryProperties(self.physical)
        self._mem_types = [(int(mem.memoryTypes[i].propertyFlags)) for i in range(mem.memoryTypeCount)]
        self._live: weakref.WeakSet = weakref.WeakSet()
        self._recordings: weakref.WeakSet = weakref.WeakSet()
        self._programs: dict[str, Program] = {}
        self._staging: Buffer | None = None
        self._cache_path = (Path(cache_dir) / f"pipelines-{self.info.key}.bin") if cache_dir else None
        initial = self._cache_path.read_bytes() if self._cache_path and self._cache_path.is_file() else b""
        ci = vk.VkPipelineCacheCreateInfo(sType=vk.VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                          initialDataSize=len(initial), pInitialData=vk.ffi.from_buffer(initial) if initial else None)
        self._pipeline_cache = vk.vkCreatePipelineCache(self.handle, ci, None)
        self._closed = False
        atexit.register(self.close)

    # -- memory -------------------------------------------------------------------------------
    def _memory_type(self, bits: int, host: bool = False, staging: bool = False) -> tuple[int, bool]:
        DL, HV, HC = (vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT,
                      vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
        cands = [i for i in range(len(self._mem_types)) if bits & (1 << i)]
        if staging:
            order = [HV | HC]
        elif host:
            order = [DL | HV | HC, HV | HC]
        else:
            # device-local and mappable (lavapipe, iGPU, resizable BAR) saves the staging copy;
            # on a discrete GPU prefer plain device-local: the BAR window is small.
            order = [DL, DL | HV | HC] if self.info.type == 2 else [DL | HV | HC, DL]
        for want in order:
            for i in cands:
                if self._mem_types[i] & want == want:
                    return i, bool(self._mem_types[i] & HV and self._mem_types[i] & HC)
        for i in cands:
            return i, bool(self._mem_types[i] & HV and self._mem_types[i] & HC)
        raise DeviceError(f"{self.info.name}: no memory type fits a storage buffer")

    def buffer(self, nbytes: int, name: str = "", host: bool = False) -> Buffer:
        return Buffer(self, nbytes, name, host)

    def upload(self, array: np.ndarray, name: str = "") -> Buffer:
        a = np.ascontiguousarray(array)
        b = Buffer(self, a.nbytes, name)
        b.write(a)
        return b

    def _staging_buffer(self, nbytes: int) -> Buffer:
        if self._staging is None or self._staging.nbytes < nbytes:
            if self._staging is not None:
                self._staging.destroy()
            size = max(nbytes, 16 << 20)
            st = Buffer.__new__(Buffer)
            st.device, st.nbytes, st.name, st.alloc = self, size, "staging", size
            d = self.handle
            st.handle = vk.vkCreateBuffer(d, vk.VkBufferCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, size=size,
                usage=vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE), None)
            req = vk.vkGetBufferMemoryRequirements(d, st.handle)
            mtype, _ = self._memory_type(req.memoryTypeBits, staging=True)
            st.memory = _vkcall("vkAllocateMemory (staging)", vk.vkAllocateMemory, d, vk.VkMemoryAllocateInfo(
                sType=vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, allocationSize=req.size, memoryTypeIndex=mtype), None,
                device_name=self.info.name, size=req.size)
            vk.vkBindBufferMemory(d, st.handle, st.memory, 0)
            st.host_visible = True
            st._map = vk.vkMapMemory(d, st.memory, 0, size, 0)
            self._staging = st
        return self._staging

    def _staged_write(self, buf: Buffer, data: memoryview, offset: int) -> None:
        chunk = 64 << 20
        for start in range(0, len(data), chunk):
            part = data[start:start + chunk]
            st = self._staging_buffer(len(part))
            st._map[0:len(part)] = part
            rec = Recording(self, label="upload")
            vk.vkCmdCopyBuffer(rec.cmd, st.handle, buf.handle, 1,
                               [vk.VkBufferCopy(srcOffset=0, dstOffset=offset + start, size=len(part))])
            rec.submit()
            rec.destroy()

    def _staged_read(self, buf: Buffer, nbytes: int, offset: int) -> bytes:
        out = bytearray()
        chunk = 64 << 20
        for start in range(0, nbytes, chunk):
            n = min(chunk, nbytes - start)
            st = self._staging_buffer(n)
            rec = Recording(self, label="download")
            vk.vkCmdCopyBuffer(rec.cmd, buf.handle, st.handle, 1,
                               [vk.VkBufferCopy(srcOffset=offset + start, dstOffset=0, size=n)])
            rec.submit()
            rec.destroy()
            out += bytes(st._map[0:n])
        return bytes(out)

    # -- programs -----------------------------------------------------------------------------
    def program(self, artifact, build_dir: Path) -> Program:
        p = self._programs.get(artifact.name)
        if p is None or p.artifact.hash != artifact.hash:
            path = Path(build_dir) / artifact.file
            try:
                spirv = path.read_bytes()
            except OSError:
                raise GemforgeError(f"kernel file {path} is missing", "run `make kernels`") from None
            p = Program(self, artifact, spirv)
            self._programs[artifact.name] = p
        return p

    def record(self, timestamps: bool = False, label: str = "") -> Recording:
        return Recording(self, timestamps=timestamps, label=label)

    def time_call(self, call, reps: int, label: str = "timed", warm_s: float = 0.0, rounds: int = 1) -> float:
        """GPU seconds per call of ``call(rec)`` in the steady state (time_calls of one call)."""
        return self.time_calls([call], reps, label, warm_s, rounds)[0]

    def time_calls(self, calls, reps: int, label: str = "timed", warm_s: float = 0.0,
                   rounds: int = 1) -> list[float]:
        """GPU seconds per call of each of ``calls`` (each ``call(rec)`` records one or more dispatches) in
        the steady state, recorded as a model step runs its products: every call in turn, ``reps`` times
        over, in one timestamped recording. A call's time is the span from the end of the dispatch before
        it to the end of its own (barrier included, the recording's first start latency left out). The
        recording is submitted to warm up (again and again for ``warm_s`` seconds: a GPU that idled while
        the host worked runs its first milliseconds at low clocks) and then ``rounds`` times to time; each
        call keeps its fastest round."""
        if reps < 2 or not calls:
            raise GemforgeError(f"time_calls needs calls recorded >= 2 times each ({len(calls)} calls x {reps} reps)")
        rec = self.record(timestamps=True, label=label)
        try:
            spans = []                       # (call, its first dispatch, one past its last)
            for _ in range(reps):
                for i, call in enumerate(calls):
                    first = len(rec.names)
                    call(rec)
                    spans.append((i, first, len(rec.names)))
            end = time.perf_counter() + warm_s
            rec.submit()
            while time.perf_counter() < end:
                rec.submit()
            best = [float("inf")] * len(calls)
            for _ in range(max(1, rounds)):
                rec.submit()
                ends = rec._timestamps()[1::2]
                total, count = [0.0] * len(calls), [0] * len(calls)
                for i, first, stop in spans[1:]:    # every call is timed >= once: reps >= 2
                    total[i] += float(ends[stop - 1] - ends[first - 1])
                    count[i] += 1
                best = [min(b, t / c) for b, t, c in zip(best, total, count)]
            return best
        finally:
            rec.destroy()

    def save_pipeline_cache(self) -> None:
        if not self._cache_path:
            return
        try:
            # the `vulkan` package does not wrap vkGetPipelineCacheData: call it through cffi (size, then data)
            size = vk.ffi.new("size_t *")
            vk.lib.vkGetPipelineCacheData(self.handle, self._pipeline_cache, size, vk.ffi.NULL)
            data = vk.ffi.new("char[]", size[0])
            if vk.lib.vkGetPipelineCacheData(self.handle, self._pipeline_cache, size, data) != vk.VK_SUCCESS:
                return
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache_path.with_suffix(".tmp")
            tmp.write_bytes(vk.ffi.buffer(data, size[0])[:])
            tmp.replace(self._cache_path)
        except (OSError, vk.VkError):
            pass  # a cache is an optimisation; failing to save it must not fail the run

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        vk.vkDeviceWaitIdle(self.handle)
        self.save_pipeline_cache()
        for r in list(self._recordings):
            r.destroy()
        for p in self._programs.values():
            p.destroy()
        self._programs.clear()
        for b in list(self._live):
            b.destroy()
        if self._staging is not None:
            self._staging.destroy()
        vk.vkDestroyPipelineCache(self.handle, self._pipeline_cache, None)
        vk.vkDestroyCommandPool(self.handle, self._cmd_pool, None)
        vk.vkDestroyDevice(self.handle, None)
