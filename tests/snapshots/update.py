"""Rewrite the golden kernel sources from the current generator: `python -m tests.snapshots.update`.

Review the diff (`git diff tests/snapshots`) before committing it: every changed line is a changed kernel.
"""
from __future__ import annotations

import sys

from .replay import GOLDEN_DIR, golden_path, goldens, render_all


def main() -> int:
    rendered = render_all()
    old = goldens()
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    added = changed = 0
    for name, src in sorted(rendered.items()):
        if name not in old:
            added += 1
        elif old[name] != src:
            changed += 1
        else:
            continue
        golden_path(name).write_text(src)
    removed = sorted(set(old) - set(rendered))
    for name in removed:
        golden_path(name).unlink()
    print(f"snapshots: {len(rendered)} kernels; {added} added, {changed} changed, {len(removed)} removed "
          f"in {GOLDEN_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
