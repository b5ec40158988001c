"""Process replay: every generated NPU design (MLIR + AIE C++) must equal its golden (hash, and full text for
the representative ones).  If a change is intended: `python -m tests.npu.snapshots.update`, review, commit."""
from __future__ import annotations

import difflib

from .snapshots.replay import UPDATE_COMMAND, golden_files, golden_index, index_of, render_all


def test_generated_designs_match_the_goldens():
    rendered = render_all()
    now, gold = index_of(rendered), golden_index()
    files = golden_files()
    report = []
    for name, (mlir, kernel, full) in sorted(rendered.items()):
        if not full:
            continue
        for suffix, text in ((".mlir", mlir), (".cc", kernel)):
            old = files.get(name + suffix)
            if old is None:
                report.append(f"no golden {name + suffix}")
            elif old != text:
                diff = list(difflib.unified_diff(old.splitlines(), text.splitlines(), f"golden {name + suffix}",
                                                 "rendered", lineterm=""))
                report += diff[:40] + ([f"... ({len(diff) - 40} more diff lines)"] if len(diff) > 40 else [])
    changed = sorted(n for n in set(now) & set(gold) if now[n] != gold[n])
    new, gone = sorted(set(now) - set(gold)), sorted(set(gold) - set(now))
    if changed:
        report.append(f"{len(changed)} design(s) changed: {', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}")
    if new:
        report.append(f"{len(new)} new design(s) without a golden: {', '.join(new[:8])}")
    if gone:
        report.append(f"{len(gone)} golden(s) for designs no longer generated: {', '.join(gone[:8])}")
    if report:
        report.append(f"if intended, run `{UPDATE_COMMAND}` and commit tests/npu/snapshots/")
        raise AssertionError("\n".join(report))
