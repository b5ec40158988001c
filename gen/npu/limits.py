"""Phoenix (XDNA, AIE2 / "AIE-ML", device npu1) limits: what the resource checker enforces and what
``gemforge plan`` divides by.

Memory, locks and buffer descriptors are the pinned release's target model
(include/aie/Dialect/AIE/IR/AIETargetModel.h, class AIE2TargetModel); BD wrap/repeat/stride widths are
those its verifier (lib/Dialect/AIEX/IR/AIEXDialect.cpp, verifyStridesWraps) checks for runtime DMA.
Program memory is the AIE-ML core's 16 KB; we can only estimate a core's code size (see ``check.py``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    columns: int = 4                    # npu1_4col: 4 usable columns
    compute_rows: int = 4               # rows 2..5
    first_compute_row: int = 2
    core_data_bytes: int = 64 * 1024    # data memory per compute tile (getLocalMemorySize)
    core_program_bytes: int = 16 * 1024
    memtile_bytes: int = 512 * 1024     # getMemTileSize
    locks: tuple = (("shim", 16), ("mem", 64), ("core", 16))
    bds: tuple = (("shim", 16), ("mem", 48), ("core", 16))
    # DMA channels (S2MM in, MM2S out) per tile kind
    channels: tuple = (("shim", (2, 2)), ("mem", (6, 6)), ("core", (2, 2)))
    bd_dim_words: int = 1023            # 10-bit wraps (shim, memtile); compute tiles 255 (8 bits)
    core_bd_dim_words: int = 255
    bd_dims: tuple = (("shim", 4), ("mem", 4), ("core", 3))   # dimensions a BD can describe
    repeats: int = 64                   # 6-bit iteration count of a shim BD
    shim_stride_words: int = 1 << 20    # 20-bit step sizes on the shim
    align_bytes: int = 4                # address generation granularity (32 bits)
    default_stack_bytes: int = 0x400    # aie.core's default stack_size

    def per_kind(self, table: tuple, kind: str):
        return dict(table)[kind]


LIMITS = Limits()


@dataclass(frozen=True)
class Performance:
    """Published Phoenix figures ``gemforge plan`` uses; nothing here was measured."""
    int8_ops_per_s: float = 10e12        # "up to 10 TOPS" (AMD, Ryzen 7040 "Phoenix" NPU), int8
    dram_bytes_per_s: float = 89.6e9     # dual-channel DDR5-5600: 2 x 64 bit x 5600 MT/s, shared with the iGPU
    igpu_fp32_flops: float = 8.9e12      # Radeon 780M: 12 RDNA3 CUs x 64 lanes x 2 (FMA) x 2 (dual issue) x 2.9 GHz
    source: str = ("AMD Ryzen 7040 series (Phoenix) product pages: NPU up to 10 TOPS, Radeon 780M 12 CUs at "
                   "2.9 GHz; DDR5-5600 dual channel = 89.6 GB/s")


PHOENIX = Performance()
