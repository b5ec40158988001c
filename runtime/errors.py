"""One error type for everything a user can get wrong or lack.

Every message names the thing at fault (file, field, value, device, tool) and
the fix.  The CLI prints ``str(err)`` on one line and exits with ``err.exit_code``;
no traceback reaches the user.
"""
from __future__ import annotations


class GemforgeError(Exception):
    """A failure the user can act on. ``hint`` says how."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class SpecError(GemforgeError):
    """A YAML spec or config is malformed: names file, op and field."""

    exit_code = 2


class ToolError(GemforgeError):
    """An external tool (glslc, aiecc, ...) is missing or failed."""

    exit_code = 3

    def __init__(self, message: str, cmd: list[str] | None = None, stderr: str = "", hint: str | None = None):
        self.cmd = cmd or []
        self.stderr = stderr
        super().__init__(message, hint)


class DeviceError(GemforgeError):
    """A device is missing, lost, out of memory or lacks a feature."""

    exit_code = 4


class ModelError(GemforgeError):
    """A model file, tokenizer or prompt is unusable."""

    exit_code = 5
