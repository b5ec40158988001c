"""The NPU side of gemforge: MLIR-AIE designs for AMD Ryzen AI "Phoenix" (XDNA, npu1).

    pin.py        the pinned mlir-aie release, Peano, the XRT calling convention (the one place)
    limits.py     Phoenix's resource limits and published performance figures
    spec.py       the `npu:` section of configs/ops/*.yaml -> the designs the configured models need
    design.py     tilings and template contexts of the W8A8 GEMM (prefill) and GEMV (decode) designs
    render.py     templates/aie/*.j2 -> MLIR text and AIE C++ kernels
    mlir.py       the generated MLIR read back into plain data
    check.py      the resource checker (on the generated text)
    emulate.py    numpy emulation of a generated design; kernels.py mirrors the C++ kernels
    layout.py     host layouts (int8 rows + scale blocks, weight row order) and the numpy W8A8 reference
    toolchain.py  finding aiecc.py and Peano
    build.py      `gemforge kernels --target npu`
    plan.py       `gemforge plan`
"""
