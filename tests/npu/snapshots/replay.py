"""Render every NPU design the installed specs, templates and models produce (no toolchain needed)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent
INDEX = GOLDEN_DIR / "index.json"
UPDATE_COMMAND = "python -m tests.npu.snapshots.update"
# kept in full: every kernel expansion (buckets 16, 32, 256), decode, and the runtime sequences that split
# at the 64-repeat limit (27B gate_up prefill, 27B logits)
FULL = {("gemma3-270m", "qkv", 16), ("gemma3-270m", "qkv", 32), ("gemma3-270m", "qkv", 256),
        ("gemma3-270m", "qkv", 1), ("gemma3-27b", "gate_up", 256), ("gemma3-27b", "lm_head", 1)}


def render_all() -> dict[str, tuple[str, str, bool]]:
    """{design: (mlir, kernel source, kept in full)}."""
    from gemforge.gen.npu.build import plan
    out = {}
    for p in plan():
        full = any((u.model, u.matrix, u.rows) in FULL for u in p.uses)
        out[p.name] = (p.rendered.mlir, p.rendered.kernel, full)
    return out


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def index_of(rendered) -> dict[str, list[str]]:
    return {n: [digest(m), digest(k)] for n, (m, k, _) in sorted(rendered.items())}


def golden_index() -> dict[str, list[str]]:
    return json.loads(INDEX.read_text()) if INDEX.is_file() else {}


def golden_files() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(GOLDEN_DIR.iterdir()) if p.suffix in (".mlir", ".cc")}
