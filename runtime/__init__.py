"""gemforge.runtime: devices, buffers, programs, the Gemma 3 model and the CLI."""
from .errors import DeviceError, GemforgeError, ModelError, SpecError, ToolError

__all__ = ["GemforgeError", "DeviceError", "ModelError", "SpecError", "ToolError"]


def __getattr__(name):
    # `from gemforge.runtime import Model` without importing Vulkan for every user of errors.
    if name == "Model":
        from .model import Model
        return Model
    raise AttributeError(name)
