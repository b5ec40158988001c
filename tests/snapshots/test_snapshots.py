"""Process replay: every rendered kernel source must equal its committed golden.

A change to the generator (gen/), a template, a spec, a model config or a tuning file that changes a
kernel shows up here as a diff. If the change is intended, run the update command and commit the goldens.
"""
from __future__ import annotations

import difflib

from .replay import UPDATE_COMMAND, golden_path, goldens, render_all

MAX_DIFF_LINES = 60


def test_rendered_sources_match_the_goldens():
    rendered, golden = render_all(), goldens()
    new = sorted(set(rendered) - set(golden))
    gone = sorted(set(golden) - set(rendered))
    changed = sorted(n for n in set(rendered) & set(golden) if rendered[n] != golden[n])
    if not (new or gone or changed):
        return
    report = []
    if changed:
        report.append(f"{len(changed)} kernel source(s) changed: {', '.join(changed)}")
        diff = difflib.unified_diff(golden[changed[0]].splitlines(), rendered[changed[0]].splitlines(),
                                    f"golden {golden_path(changed[0])}", f"rendered {changed[0]}", lineterm="")
        lines = list(diff)
        report += lines[:MAX_DIFF_LINES] + ([f"... ({len(lines) - MAX_DIFF_LINES} more diff lines)"]
                                            if len(lines) > MAX_DIFF_LINES else [])
    if new:
        report.append(f"{len(new)} new kernel(s) without a golden: {', '.join(new)}")
    if gone:
        report.append(f"{len(gone)} golden(s) for kernels no longer generated: {', '.join(gone)}")
    report.append(f"if these changes are intended, run `{UPDATE_COMMAND}` and commit tests/snapshots/glsl/")
    raise AssertionError("\n".join(report))

