"""Where gemforge finds its configs and templates and keeps its build and cache.

The only environment variables gemforge reads are here:
``GEMFORGE_BUILD_DIR`` (the kernel build, default ``<checkout>/build`` in a source
checkout, else ``<cache>/build``) and ``GEMFORGE_CACHE_DIR`` (models, converted
weights, tokenizers; default ``$XDG_CACHE_HOME/gemforge`` or ``~/.cache/gemforge``).
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def configs_dir() -> Path:
    return Path(str(resources.files("gemforge.configs")))


def templates_dir() -> Path:
    return Path(str(resources.files("gemforge.templates")))


def source_checkout() -> Path | None:
    """The repository root when running from a source checkout (editable install)."""
    root = configs_dir().parent
    return root if (root / "pyproject.toml").is_file() and (root / "gen").is_dir() else None


def cache_dir() -> Path:
    env = os.environ.get("GEMFORGE_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gemforge"


def build_dir() -> Path:
    env = os.environ.get("GEMFORGE_BUILD_DIR")
    if env:
        return Path(env)
    root = source_checkout()
    return root / "build" if root else cache_dir() / "build"
