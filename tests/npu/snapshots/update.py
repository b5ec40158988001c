"""Rewrite the NPU design goldens from the current generator: `python -m tests.npu.snapshots.update`.

Review `git diff tests/npu/snapshots` before committing: every changed hash is a changed design."""
from __future__ import annotations

import json
import sys

from .replay import GOLDEN_DIR, INDEX, golden_files, golden_index, index_of, render_all


def main() -> int:
    rendered = render_all()
    old = golden_index()
    new = index_of(rendered)
    INDEX.write_text(json.dumps(new, indent=1) + "\n")
    keep = set()
    for name, (mlir, kernel, full) in rendered.items():
        if full:
            for suffix, text in ((".mlir", mlir), (".cc", kernel)):
                keep.add(name + suffix)
                p = GOLDEN_DIR / (name + suffix)
                if not p.is_file() or p.read_text() != text:
                    p.write_text(text)
    for f in golden_files():
        if f not in keep:
            (GOLDEN_DIR / f).unlink()
    changed = sum(old.get(n) != h for n, h in new.items())
    print(f"npu snapshots: {len(new)} designs ({len(keep) // 2} in full); {changed} new or changed, "
          f"{len(set(old) - set(new))} removed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
