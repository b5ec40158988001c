"""The resource checker: every design the configured models need fits; each Phoenix limit, exceeded once,
is reported with the tile, the resource, what is needed and the limit."""
from __future__ import annotations

import pytest

from gemforge.gen.npu.build import plan
from gemforge.gen.npu.check import ResourceError, Violation, check_text, usage_and_violations
from gemforge.gen.npu.design import gemm_tiling
from gemforge.gen.npu.mlir import MlirError, parse

from .conftest import render

# A small design in the pinned release's syntax: shim -> memtile -> core -> memtile -> shim.
BASE = """\
module {
  aie.device(npu1_4col) {
    func.func private @scale(memref<1024xi32>, memref<1024xi32>)
    %tile_0_0 = aie.tile(0, 0)
    %tile_0_1 = aie.tile(0, 1)
    %tile_0_2 = aie.tile(0, 2)
    aie.objectfifo @in0(%tile_0_0, {%tile_0_1}, 2 : i32) : !aie.objectfifo<memref<1024xi32>>
    aie.objectfifo @in1(%tile_0_1, {%tile_0_2}, 2 : i32) : !aie.objectfifo<memref<1024xi32>>
    aie.objectfifo.link [@in0] -> [@in1]([] [])
    aie.objectfifo @out1(%tile_0_2, {%tile_0_1}, 2 : i32) : !aie.objectfifo<memref<1024xi32>>
    aie.objectfifo @out0(%tile_0_1, {%tile_0_0}, 2 : i32) : !aie.objectfifo<memref<1024xi32>>
    aie.objectfifo.link [@out1] -> [@out0]([] [])
    %core_0_2 = aie.core(%tile_0_2) {
      %c0 = arith.constant 0 : index
      %c1 = arith.constant 1 : index
      %c4 = arith.constant 4 : index
      scf.for %i = %c0 to %c4 step %c1 {
        %a_sub = aie.objectfifo.acquire @in1(Consume, 1) : !aie.objectfifosubview<memref<1024xi32>>
        %a = aie.objectfifo.subview.access %a_sub[0] : !aie.objectfifosubview<memref<1024xi32>> -> memref<1024xi32>
        %b_sub = aie.objectfifo.acquire @out1(Produce, 1) : !aie.objectfifosubview<memref<1024xi32>>
        %b = aie.objectfifo.subview.access %b_sub[0] : !aie.objectfifosubview<memref<1024xi32>> -> memref<1024xi32>
        func.call @scale(%a, %b) : (memref<1024xi32>, memref<1024xi32>) -> ()
        aie.objectfifo.release @in1(Consume, 1)
        aie.objectfifo.release @out1(Produce, 1)
      }
      aie.end
    } {link_with = "scale.o", stack_size = 1024 : i32}
    aiex.runtime_sequence(%arg0: memref<4096xi32>, %arg1: memref<4096xi32>) {
      aiex.npu.dma_memcpy_nd(%arg1[0, 0, 0, 0][1, 1, 1, 4096][0, 0, 0, 1]) {id = 0 : i64, issue_token = true, metadata = @out0} : memref<4096xi32>
      aiex.npu.dma_memcpy_nd(%arg0[0, 0, 0, 0][1, 1, 1, 4096][0, 0, 0, 1]) {id = 1 : i64, metadata = @in0} : memref<4096xi32>
      aiex.npu.dma_wait {symbol = @out0}
    }
  }
}
"""
FIFO_DECLS = "    aie.objectfifo.link [@out1] -> [@out0]([] [])\n"


def violations(text: str) -> list[Violation]:
    return usage_and_violations(parse(text))[1]


def with_fifos(lines: list[str], text: str = BASE) -> str:
    return text.replace(FIFO_DECLS, FIFO_DECLS + "".join(f"    {ln}\n" for ln in lines))


def only(vs: list[Violation], tile: str, resource: str, need, limit) -> None:
    assert [(v.tile, v.resource, str(v.need), str(v.limit)) for v in vs] == [(tile, resource, str(need), str(limit))], vs


def test_the_base_design_fits():
    assert violations(BASE) == []
    usage = check_text(BASE, "base")
    assert usage.data == {(0, 2): 2 * 4096 + 2 * 4096 + 1024}


def test_every_design_of_the_configured_models_fits():
    designs = plan()       # raises, naming every violation, if one does not fit
    assert len({p.tiling.kind for p in designs}) == 2 and len(designs) > 50
    for p in designs:
        assert max(p.usage.data.values()) <= 64 * 1024 and max(p.usage.program.values()) <= 16 * 1024


def test_data_memory_counts_the_stack():
    vs = violations(BASE.replace("stack_size = 1024", "stack_size = 50000"))
    only(vs, "compute tile (0,2)", "data memory", "66384 bytes", "65536 bytes")
    assert "stack 50000" in vs[0].detail and "@in1 2x4096" in vs[0].detail


def test_data_memory_of_a_real_design_with_too_large_tiles():
    t = gemm_tiling(64, 512, 512, 64, 512, 256)           # A 16x512, B 64x512 int8: 91 KB a core
    with pytest.raises(ResourceError) as e:
        check_text(render(t).mlir, t.name)
    assert len(e.value.violations) == 16 and all(v.resource == "data memory" for v in e.value.violations)
    assert "compute tile (3,5): data memory needs 91136 bytes, limit 65536 bytes" in str(e.value)


def test_program_memory_estimate():
    calls = "        func.call @scale(%a, %b) : (memref<1024xi32>, memref<1024xi32>) -> ()\n"
    text = BASE.replace(calls, calls * 700)
    vs = violations(text)
    assert [(v.tile, v.resource, v.limit) for v in vs] == [("compute tile (0,2)", "program memory (estimate)",
                                                            "16384 bytes")]
    assert int(vs[0].need.split()[0]) > 16384


def test_program_memory_grows_with_the_unrolled_depth():
    """The ObjectFifo lowering unrolls a loop by the depths it cycles: deeper fifos, more code."""
    small = usage_and_violations(parse(BASE))[0].program[(0, 2)]
    deep = usage_and_violations(parse(BASE.replace("%c4 = arith.constant 4", "%c4 = arith.constant 64")
                                      .replace("@in1(%tile_0_1, {%tile_0_2}, 2", "@in1(%tile_0_1, {%tile_0_2}, 4")
                                      .replace("@out1(%tile_0_2, {%tile_0_1}, 2", "@out1(%tile_0_2, {%tile_0_1}, 3")))
    assert deep[0].program[(0, 2)] > small + 10 * 100     # lcm(4, 3) = 12 copies of the body instead of 2


def test_locks_of_a_compute_tile():
    # nine fifos to the neighbour core: shared memory, so no DMA; 2 locks each in the producer's tile
    fifos = [f"aie.objectfifo @n{i}(%tile_0_2, {{%tile_0_3}}, 1 : i32) : !aie.objectfifo<memref<16xi32>>"
             for i in range(9)]
    text = with_fifos(fifos, BASE.replace("    %tile_0_2 = aie.tile(0, 2)\n",
                                          "    %tile_0_2 = aie.tile(0, 2)\n    %tile_0_3 = aie.tile(0, 3)\n"))
    only(violations(text), "compute tile (0,2)", "locks", 22, 16)


def test_locks_of_a_memtile():
    fifos = [f"aie.objectfifo @m{i}(%tile_0_1, {{%tile_1_1}}, 1 : i32) : !aie.objectfifo<memref<16xi32>>"
             for i in range(30)]
    text = with_fifos(fifos, BASE.replace("    %tile_0_2 = aie.tile(0, 2)\n",
                                          "    %tile_0_2 = aie.tile(0, 2)\n    %tile_1_1 = aie.tile(1, 1)\n"))
    only(violations(text), "memtile (0,1)", "locks", 68, 64)


def test_locks_of_a_shim_tile():
    fifos = [f"aie.objectfifo @s{i}(%tile_0_0, {{%tile_0_1}}, 1 : i32) : !aie.objectfifo<memref<16xi32>>"
             for i in range(7)]
    vs = violations(with_fifos(fifos))
    assert Violation("shim tile (0,0)", "locks", 18, 16, "2 per ObjectFifo end") in vs
    # (seven more fifos out of one shim also need more than its 2 output channels)
    assert {v.resource for v in vs} == {"locks", "DMA output channels (MM2S)", "DMA input channels (S2MM)"}


def test_buffer_descriptors_of_a_compute_tile():
    text = BASE.replace("@in1(%tile_0_1, {%tile_0_2}, 2", "@in1(%tile_0_1, {%tile_0_2}, 9") \
               .replace("@out1(%tile_0_2, {%tile_0_1}, 2", "@out1(%tile_0_2, {%tile_0_1}, 9") \
               .replace("memref<1024xi32>", "memref<64xi32>")
    only(violations(text), "compute tile (0,2)", "buffer descriptors", 18, 16)


def test_buffer_descriptors_of_a_memtile():
    fifos = [f"aie.objectfifo @b{i}(%tile_0_1, {{%tile_1_1}}, 2 : i32) : !aie.objectfifo<memref<16xi32>>"
             for i in range(3)]
    # three fifos of depth 14 to a memtile that is not a neighbour: 3 x 14 + the base's 8 = 50 BDs
    fifos = [f.replace("%tile_1_1}, 2", "%tile_2_1}, 14") for f in fifos]
    text = with_fifos(fifos, BASE.replace("    %tile_0_2 = aie.tile(0, 2)\n",
                                          "    %tile_0_2 = aie.tile(0, 2)\n    %tile_2_1 = aie.tile(2, 1)\n"))
    only(violations(text), "memtile (0,1)", "buffer descriptors", 50, 48)


def test_buffer_descriptor_ids_of_the_shim():
    text = BASE.replace("{id = 1 : i64, metadata = @in0}", "{id = 16 : i64, metadata = @in0}")
    vs = violations(text)
    assert [(v.resource, v.need, v.limit) for v in vs] == [("BD id", 16, "< 16")]
    assert vs[0].tile.startswith("shim tile (0,0) line")


def test_dma_input_channels_of_a_compute_tile():
    fifos = ["aie.objectfifo @x(%tile_0_1, {%tile_0_2}, 2 : i32) : !aie.objectfifo<memref<16xi32>>",
             "aie.objectfifo @y(%tile_0_1, {%tile_0_2}, 2 : i32) : !aie.objectfifo<memref<16xi32>>"]
    vs = violations(with_fifos(fifos))
    only(vs, "compute tile (0,2)", "DMA input channels (S2MM)", 3, 2)
    assert vs[0].detail == "@in1, @x, @y"


def test_dma_channels_of_a_memtile():
    tiles = "".join(f"    %tile_{c}_2 = aie.tile({c}, 2)\n" for c in (1, 2, 3)) + \
        "".join(f"    %tile_{c}_3 = aie.tile({c}, 3)\n" for c in (0, 1, 2, 3))
    fifos = [f"aie.objectfifo @j{c}{r}(%tile_{c}_{r}, {{%tile_0_1}}, 1 : i32) : !aie.objectfifo<memref<16xi32>>"
             for c, r in [(1, 2), (2, 2), (3, 2), (0, 3), (1, 3), (2, 3)]]
    text = with_fifos(fifos, BASE.replace("    %tile_0_2 = aie.tile(0, 2)\n", "    %tile_0_2 = aie.tile(0, 2)\n" + tiles))
    only(violations(text), "memtile (0,1)", "DMA input channels (S2MM)", 8, 6)


def test_dma_output_channels_of_a_shim_tile():
    fifos = ["aie.objectfifo @s(%tile_0_0, {%tile_0_1}, 1 : i32) : !aie.objectfifo<memref<16xi32>>",
             "aie.objectfifo @t(%tile_0_0, {%tile_0_1}, 1 : i32) : !aie.objectfifo<memref<16xi32>>"]
    only(violations(with_fifos(fifos)), "shim tile (0,0)", "DMA output channels (MM2S)", 3, 2)


def test_bd_dimension_of_a_runtime_transfer():
    text = BASE.replace("%arg0[0, 0, 0, 0][1, 1, 1, 4096][0, 0, 0, 1]", "%arg0[0, 0, 0, 0][1, 1, 2, 2048][0, 0, 2048, 1]")
    vs = violations(text)
    assert [(v.resource, v.need, v.limit) for v in vs] == [("BD dimension 0 size", "2048 words", 1023)]


def test_a_linear_transfer_is_exempt_from_the_innermost_wrap():
    assert violations(BASE) == []          # [1, 1, 1, 4096] x 4 bytes = 4096 words in one linear BD


def test_bd_dimension_of_a_memtile_layout():
    text = BASE.replace("@in1(%tile_0_1, {", "@in1(%tile_0_1 dimensionsToStream [<size = 1, stride = 2048>, "
                                             "<size = 1024, stride = 1>], {")
    vs = violations(text)
    assert [(v.tile, v.resource, v.need, v.limit) for v in vs] == \
        [("memtile (0,1) @in1", "BD dimension 1 size", "1024 words", 1023)]


def test_repeat_count():
    text = BASE.replace("%arg0[0, 0, 0, 0][1, 1, 1, 4096][0, 0, 0, 1]", "%arg0[0, 0, 0, 0][65, 1, 1, 64][0, 0, 0, 1]")
    vs = violations(text)
    assert [(v.resource, v.need, v.limit) for v in vs] == [("repeat count", 65, 64)]


def test_shim_stride():
    text = BASE.replace("%arg0[0, 0, 0, 0][1, 1, 1, 4096][0, 0, 0, 1]) {id = 1 : i64, metadata = @in0} : memref<4096xi32>",
                        "%arg0[0, 0, 0, 0][1, 1, 4, 512][0, 0, 2097152, 1]) {id = 1 : i64, metadata = @in0} : "
                        "memref<8388608xi32>").replace("%arg0: memref<4096xi32>", "%arg0: memref<8388608xi32>")
    vs = violations(text)
    assert [(v.resource, v.need, v.limit) for v in vs] == [("BD dimension 1 stride", "2097152 words", 1 << 20)]


def test_four_byte_alignment():
    text = BASE.replace("memref<4096xi32>) {", "memref<4096xi8>) {").replace(
        "%arg0[0, 0, 0, 0][1, 1, 1, 4096][0, 0, 0, 1]) {id = 1 : i64, metadata = @in0} : memref<4096xi32>",
        "%arg0[0, 0, 0, 2][1, 1, 1, 4094][0, 0, 0, 1]) {id = 1 : i64, metadata = @in0} : memref<4096xi8>")
    text = text.replace("%arg0: memref<4096xi32>", "%arg0: memref<4096xi8>")
    vs = violations(text)
    assert [(v.resource, v.need) for v in vs] == [("4-byte alignment of the offset", "2 bytes"),
                                                  ("4-byte alignment of the innermost size", "4094 bytes")]


def test_memtile_memory():
    text = BASE.replace("@in0(%tile_0_0, {%tile_0_1}, 2 : i32) : !aie.objectfifo<memref<1024xi32>>",
                        "@in0(%tile_0_0, {%tile_0_1}, 2 : i32) : !aie.objectfifo<memref<70000xi32>>")
    vs = violations(text)
    only(vs, "memtile (0,1)", "memtile memory", "568192 bytes", "524288 bytes")


def test_array_of_four_columns_and_four_compute_rows():
    text = BASE.replace("%tile_0_2 = aie.tile(0, 2)", "%tile_0_2 = aie.tile(4, 6)")
    vs = violations(text)
    assert [(v.tile, v.resource, v.need, v.limit) for v in vs] == [("tile (4,6)", "array columns", 5, 4),
                                                                  ("tile (4,6)", "array rows", 7, 6)]


def test_every_violation_is_reported_at_once():
    text = BASE.replace("stack_size = 1024", "stack_size = 50000").replace("{id = 1 : i64", "{id = 20 : i64")
    with pytest.raises(ResourceError) as e:
        check_text(text, "two_faults")
    msg = str(e.value)
    assert "2 violation(s)" in msg and "data memory needs 66384 bytes" in msg and "BD id needs 20" in msg
    assert e.value.exit_code == 2


def test_unsupported_mlir_names_the_line():
    with pytest.raises(MlirError, match=r"line 5: unsupported op: 'aie.flow"):
        parse(BASE.replace("    %tile_0_0 = aie.tile(0, 0)\n", "    %tile_0_0 = aie.tile(0, 0)\n    aie.flow(%a, DMA : 0)\n"))
