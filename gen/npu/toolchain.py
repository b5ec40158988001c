"""Finding the NPU toolchain of the pinned release: aiecc.py (mlir-aie), Peano (llvm-aie), pyxrt, the device.

The mlir-aie release's own conventions are honoured: ``utils/env_setup.sh`` exports MLIR_AIE_INSTALL_DIR
and PEANO_INSTALL_DIR; its wheels install ``mlir_aie`` (with bin/aiecc.py and include/aie_api) and
``llvm-aie`` (Peano, with bin/clang++).  These two variables are the only environment the NPU side reads.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from . import pin


def _dist_dir(dist: str, sub: str) -> Path | None:
    try:
        p = Path(str(metadata.distribution(dist).locate_file(sub)))
    except metadata.PackageNotFoundError:
        return None
    return p if p.is_dir() else None


@dataclass(frozen=True)
class Toolchain:
    aiecc: str | None            # path of aiecc.py
    mlir_aie: Path | None        # mlir-aie install dir (include/ has aie_api)
    peano: Path | None           # Peano install dir (bin/clang++)
    missing: tuple = field(default=())    # (what, how to install)

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def clangxx(self) -> str | None:
        return str(self.peano / "bin" / "clang++") if self.peano else None

    def describe_missing(self) -> str:
        return "; ".join(f"{what} ({how})" for what, how in self.missing)


def find() -> Toolchain:
    mlir_aie = os.environ.get("MLIR_AIE_INSTALL_DIR")
    mlir_aie = Path(mlir_aie) if mlir_aie and Path(mlir_aie).is_dir() else _dist_dir("mlir_aie", "mlir_aie")
    aiecc = shutil.which("aiecc.py")
    if not aiecc and mlir_aie and (mlir_aie / "bin" / "aiecc.py").is_file():
        aiecc = str(mlir_aie / "bin" / "aiecc.py")
    if aiecc and not mlir_aie:
        mlir_aie = Path(aiecc).resolve().parent.parent
    peano = os.environ.get("PEANO_INSTALL_DIR")
    peano = Path(peano) if peano and (Path(peano) / "bin" / "clang++").is_file() else _dist_dir("llvm-aie", "llvm-aie")
    if peano and not (peano / "bin" / "clang++").is_file():
        peano = None
    missing = []
    if not aiecc:
        missing.append((f"aiecc.py (mlir-aie {pin.MLIR_AIE_RELEASE})", f"`{pin.INSTALL_MLIR_AIE}`"))
    elif not (mlir_aie and (mlir_aie / "include" / "aie_api").is_dir()):
        missing.append(("the aie_api headers of mlir-aie", "set MLIR_AIE_INSTALL_DIR to the mlir-aie install"))
    if not peano:
        missing.append(("Peano (llvm-aie clang++)", f"`{pin.INSTALL_PEANO}`"))
    return Toolchain(aiecc, mlir_aie, peano, tuple(missing))


def version(tc: Toolchain) -> str:
    """The compiler identity that enters the artifact hash."""
    if not tc.complete:
        return "none"
    return f"aiecc {tc.aiecc}; peano {tc.peano}"
