"""Content hashes: they change with the template, an included file, the spec, a tuning entry or the
compiler, and with nothing else."""
from __future__ import annotations

import pytest

from gemforge.gen.build import load_tuning, plan
from gemforge.runtime.config import model_configs


def hashes(project, compiler="glslc 1") -> dict[str, str]:
    specs = project.specs()
    planned = plan(specs, model_configs(project.configs / "models"), project.glsl, compiler,
                   load_tuning(project.configs / "tuning", specs))
    return {p.name: p.hash for p in planned}


def changed(before: dict, after: dict) -> set[str]:
    return {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}


ALL = {"scale_plain", "scale_add", "copy_w1", "copy_w4"}
SCALE = {"scale_plain", "scale_add"}


def edit(project, rel, old, new):
    p = project.root / rel
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new))


def test_same_inputs_same_hashes(project):
    assert hashes(project) == hashes(project)
    assert len(set(hashes(project).values())) == 4


def test_unrelated_files_do_not_change_hashes(project):
    before = hashes(project)
    project.write("templates/glsl/unused.glsl.j2", "// not included by anyone\n")
    project.write("configs/ops/README.txt", "notes\n")
    (project.glsl / "copy.comp.j2").touch()   # a newer mtime alone is no change
    assert changed(before, hashes(project)) == set()


@pytest.mark.parametrize("rel, old, new, want", [
    ("templates/glsl/scale.comp.j2", "y[i] = x[i] * pc.s;", "y[i] = pc.s * x[i];", SCALE),
    ("templates/glsl/scale.comp.j2", "void main", "{# a Jinja comment: same GLSL #}\nvoid main", SCALE),
    ("templates/glsl/common.glsl.j2", "// test kernel", "// kernel", ALL),          # included by both
    ("configs/ops/scale.yaml", "summary: y = x * s", "summary: y = s * x", SCALE),  # spec text
    ("configs/ops/scale.yaml", "wg_size: 64", "wg_size: 32", SCALE),               # a param default
    ("configs/ops/copy.yaml", "width: [1, 4]", "width: [4, 1]", {"copy_w1", "copy_w4"}),
], ids=["template", "template-comment", "included-file", "spec-text", "spec-param", "spec-axis-order"])
def test_inputs_change_exactly_their_variants(project, rel, old, new, want):
    before = hashes(project)
    edit(project, rel, old, new)
    assert changed(before, hashes(project)) == want


def test_compiler_version_changes_every_hash(project):
    assert changed(hashes(project, "glslc 1"), hashes(project, "glslc 2")) == ALL


def test_tuning_entry_changes_only_its_variant(project):
    before = hashes(project)
    project.write("configs/tuning/dev.yaml", "entries:\n  scale:\n    scale_add: {wg_size: 128}\n")
    tuned = hashes(project)
    assert changed(before, tuned) == {"scale_add@dev"}           # a new tuned artifact; defaults unchanged
    project.write("configs/tuning/dev.yaml", "entries:\n  scale:\n    scale_add: {wg_size: 256}\n")
    assert changed(tuned, hashes(project)) == {"scale_add@dev"}
    project.write("configs/tuning/dev.yaml", "entries:\n  scale:\n    scale_add: {wg_size: 128}\n")
    assert hashes(project) == tuned


def test_manifest_records_the_hash(project):
    m = project.build()
    assert {n: a.hash for n, a in m.artifacts.items()} == hashes(project, m.compiler)
