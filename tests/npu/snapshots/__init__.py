"""Process replay of the NPU designs: tests/npu/snapshots/index.json holds a hash of every generated design
(MLIR and kernel source) and a few representative designs are kept in full so a change shows as a diff."""
