"""The one place that pins the NPU toolchain: mlir-aie release, Peano, and the XRT calling convention.

Everything under ``templates/aie/`` uses the syntax of this release, read from its sources:

* MLIR: the raw text form that the release's Python (``aie.dialects.aie`` / ``aiex``, the "placed"
  style of ``programming_examples/basic/matrix_multiplication/whole_array/whole_array.py``) prints with
  ``print(ctx.module)`` and that ``aiecc.py`` parses: ``aie.device(npu1_4col)``, ``aie.objectfifo @name(%tile
  dimensionsToStream [<size = s, stride = d>, ...], {%consumers}, depth : i32)``, ``aie.objectfifo.link [@in] ->
  [@out]([src offsets] [dst offsets])``, ``aie.core(...) {...} {link_with = "k.o", stack_size = N : i32}``,
  ``aiex.runtime_sequence(...)`` with ``aiex.npu.dma_memcpy_nd(%arg[offsets][sizes][strides]) {id, metadata}``
  and ``aiex.npu.dma_wait {symbol}`` (include/aie/Dialect/AIE*/IR/*.td of the release).  We generate the text
  with Jinja instead of running the Python bindings, because the bindings cannot be installed here.
* Compiler flags: ``programming_examples/makefile-common`` and ``.../matrix_multiplication/makefile-common``.
* Several kernels in one xclbin: ``test/npu-xrt/add_one_two/run.lit`` (``--xclbin-input``, kernel name/id).
* XRT host convention: ``python/utils/xrt.py`` and ``test/npu-xrt/add_one_two/test.cpp``: kernel ``MLIR_AIE``
  (or the name given to aiecc), opcode 3, the instruction buffer (``bo.cacheable``) in group 1, its length in
  words as argument 2, the runtime-sequence arguments in groups 3, 4, 5, ... (``bo.host_only``).
"""
from __future__ import annotations

MLIR_AIE_REPO = "https://github.com/Xilinx/mlir-aie"
MLIR_AIE_RELEASE = "v1.0"
# The commit that release 1.0 is checked out at (docs of downstream users; its wheel
# mlir_aie-0.0.1.2025042204+24208c0 differs from it only in README.md and utils/env_setup.sh).
MLIR_AIE_COMMIT = "07320d6831b17e4a4c436d48c3301a17c1e9f1cd"
MLIR_AIE_WHEEL = "mlir_aie==0.0.1.2025042204+24208c0"
# The Peano (llvm-aie) wheel that the release's docs/README.md names for v1.0.
PEANO_WHEEL_URL = ("https://github.com/Xilinx/llvm-aie/releases/download/nightly/"
                   "llvm_aie-19.0.0.2025041501+b2a279c1-py3-none-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl")

INSTALL_MLIR_AIE = (f"python3 -m pip install {MLIR_AIE_WHEEL.split('==')[0]} "
                    f"-f {MLIR_AIE_REPO}/releases/expanded_assets/{MLIR_AIE_RELEASE}")
INSTALL_PEANO = f"python3 -m pip install {PEANO_WHEEL_URL}"
INSTALL_XRT = ("build and install the amdxdna driver and XRT: `bash ./utils/build_drivers.sh` in a checkout of "
               f"mlir-aie {MLIR_AIE_RELEASE}, reboot, then `source /opt/xilinx/xrt/setup.sh`")

# Device: Phoenix / Hawk Point is npu1; the whole 4-column array is npu1_4col.
DEVICE = "npu1_4col"
PEANO_TARGET = "aie2-none-unknown-elf"

# PEANOWRAP2_FLAGS of programming_examples/makefile-common (the -I is added by the driver: <mlir-aie>/include)
PEANO_FLAGS = ("-O2", "-std=c++20", f"--target={PEANO_TARGET}", "-Wno-parentheses", "-Wno-attributes",
               "-Wno-macro-redefined", "-Wno-empty-body", "-DNDEBUG")
# aiecc.py flags of matrix_multiplication/makefile-common (basic-sequential allocation, Peano, no chess).
AIECC_FLAGS = ("--alloc-scheme=basic-sequential", "--aie-generate-xclbin", "--no-compile-host",
               "--no-xchesscc", "--no-xbridge", "--aie-generate-npu-insts")

# XRT calling convention of the release's host code.
XRT_KERNEL_NAME = "MLIR_AIE"         # aiecc's default --xclbin-kernel-name
XRT_FIRST_KERNEL_ID = 0x901          # aiecc's default --xclbin-kernel-id; further kernels count up
XRT_OPCODE = 3
XRT_INSTR_GROUP = 1
XRT_FIRST_ARG_GROUP = 3
DEVICE_NODE = "/dev/accel/accel0"    # created by the amdxdna driver


def describe() -> str:
    return f"mlir-aie {MLIR_AIE_RELEASE} ({MLIR_AIE_COMMIT[:8]}), device {DEVICE}"
