"""numpy references for every op and for the whole model, written to read like GEMMA3.md.

The op tests compare each GPU kernel with these; the model tests compare the GPU
forward pass with ``forward``.  All fp32.  One module per family:
norm (RMSNorm), linear (matrix products, embedding), attention (RoPE, attention,
KV cache, GeGLU, add, sampling helpers), forward (the Gemma 3 forward pass).
"""
from .norm import *  # noqa: F401,F403

for _m in ("linear", "attention", "forward"):
    try:
        exec(f"from .{_m} import *")
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_m}":
            raise
