"""`build()`: incremental rebuilds, pruning, and glslc failures that leave no partial artifact."""
from __future__ import annotations

import json
import shlex
import os
import subprocess
import sys

import pytest

from gemforge.gen import manifest as mf
from gemforge.runtime.cli import main
from gemforge.runtime.errors import ToolError


def files(build_dir) -> dict[str, tuple[int, int]]:
    """Every file under spirv/ and src/ with (inode, mtime_ns): a rewrite (atomic rename) changes the inode."""
    out = {}
    for sub in ("spirv", "src"):
        for f in sorted((build_dir / sub).iterdir()):
            st = f.stat()
            out[f"{sub}/{f.name}"] = (st.st_ino, st.st_mtime_ns)
    return out


def rewritten(before, after) -> set[str]:
    return {f.split("/")[1].rsplit(".", 1)[0] for f in after if f.startswith("spirv/") and before.get(f) != after[f]}


def test_first_build_then_nothing_to_do(project):
    logs = []
    m = project.build(log=logs.append)
    assert sorted(m.artifacts) == ["copy_w1", "copy_w4", "scale_add", "scale_plain"]
    assert logs[-1].startswith("kernels: 4 variants, 4 compiled, 0 up to date")
    a = m.artifacts["scale_add"]
    assert (a.file, a.source, a.workgroup_size, a.push_size) == ("spirv/scale_add.spv", "src/scale_add.comp",
                                                                 [64, 1, 1], 8)
    assert [b["name"] for b in a.bindings] == ["x", "r", "y"]
    assert (project.build_dir / a.file).read_bytes()[:4] == b"\x03\x02\x23\x07"  # SPIR-V magic
    before = files(project.build_dir)
    manifest_text = (project.build_dir / "manifest.json").read_text()

    m2 = project.build(log=logs.append)
    assert logs[-1].startswith("kernels: 4 variants, 0 compiled, 4 up to date")
    assert files(project.build_dir) == before
    assert (project.build_dir / "manifest.json").read_text() == manifest_text
    assert m2.to_json() == m.to_json()


def test_editing_a_template_recompiles_only_its_variants(project):
    project.build()
    before = files(project.build_dir)
    t = project.glsl / "copy.comp.j2"
    t.write_text(t.read_text().replace("dst[i] = src[i];", "dst[i] = src[i] + src[i] * 0;"))
    project.build()
    assert rewritten(before, files(project.build_dir)) == {"copy_w1", "copy_w4"}
    assert "src[i] * 0" in (project.build_dir / "src/copy_w4.comp").read_text()


def test_editing_an_included_file_recompiles_everything(project):
    project.build()
    before = files(project.build_dir)
    (project.glsl / "common.glsl.j2").write_text("#version 450\n// edited {{ variant_name }}\n")
    project.build()
    assert rewritten(before, files(project.build_dir)) == {"copy_w1", "copy_w4", "scale_add", "scale_plain"}


def test_stale_artifacts_and_temp_files_are_pruned(project):
    project.build()
    (project.build_dir / "spirv/.scale_add.spv.999.tmp").write_bytes(b"left by a killed build")
    spec = project.ops / "scale.yaml"
    spec.write_text(spec.read_text().replace("mode: [plain, add]", "mode: [plain]"))
    m = project.build()
    assert sorted(m.artifacts) == ["copy_w1", "copy_w4", "scale_plain"]
    assert sorted(files(project.build_dir)) == ["spirv/copy_w1.spv", "spirv/copy_w4.spv", "spirv/scale_plain.spv",
                                                "src/copy_w1.comp", "src/copy_w4.comp", "src/scale_plain.comp"]


def test_a_deleted_artifact_file_is_rebuilt(project):
    project.build()
    (project.build_dir / "spirv/copy_w4.spv").unlink()
    before = files(project.build_dir)
    project.build()
    assert rewritten(before, files(project.build_dir)) == {"copy_w4"}


def test_a_corrupt_manifest_means_a_full_rebuild(project):
    project.build()
    (project.build_dir / "manifest.json").write_text("{ not json")
    before = files(project.build_dir)
    m = project.build()
    assert rewritten(before, files(project.build_dir)) == set(m.artifacts) == {"copy_w1", "copy_w4", "scale_add",
                                                                             "scale_plain"}


def test_building_one_op_keeps_the_others(project):
    project.build()
    before = files(project.build_dir)
    t = project.glsl / "copy.comp.j2"
    t.write_text(t.read_text().replace("dst[i] = src[i];", "dst[i] = src[i] * 1.0;"))
    m = project.build(ops={"scale"})
    assert rewritten(before, files(project.build_dir)) == set()
    assert sorted(m.artifacts) == ["copy_w1", "copy_w4", "scale_add", "scale_plain"]


BROKEN = "    y[i] = x[i] * pc.s;\n"


def break_scale_plain(project):
    t = project.glsl / "scale.comp.j2"
    t.write_text(t.read_text().replace(BROKEN, "    y[i] = x[i] * pc.s  // missing semicolon\n"))


def test_glslc_failure_names_command_source_and_message_and_leaves_nothing_partial(project):
    project.build()                       # scale_plain has a good .spv from this build
    break_scale_plain(project)
    with pytest.raises(ToolError) as err:
        project.build()
    e = err.value
    src = project.build_dir / "src/scale_plain.comp"
    assert e.message.startswith("kernel scale_plain does not compile: glslc failed (exit 1):\n  $ ")
    assert e.cmd[0].endswith("glslc") and str(src) in e.cmd
    assert f"$ {shlex.join(e.cmd)}" in e.message                # the command line, as run
    assert f"{src}:" in e.stderr and "error:" in e.stderr       # glslc's own message, with the source path
    assert e.stderr in e.message
    assert e.hint == f"the rendered source is {src}; fix its template"
    assert "missing semicolon" in src.read_text()               # the failing source is kept to look at

    m = mf.load(project.build_dir)
    assert sorted(m.artifacts) == ["copy_w1", "copy_w4", "scale_add"]
    assert sorted(f for f in files(project.build_dir) if f.startswith("spirv/")) == [
        "spirv/copy_w1.spv", "spirv/copy_w4.spv", "spirv/scale_add.spv"]   # the old scale_plain.spv is gone too
    leftovers = [f for f in os.listdir(project.build_dir / "spirv") + os.listdir(project.build_dir / "src")
                 if f.endswith(".tmp")]
    assert leftovers == []
    assert "scale_plain" not in json.loads((project.build_dir / "manifest.json").read_text())["artifacts"]

    # fixed: the template's variants are compiled again (scale_add too: its template text changed back)
    before = files(project.build_dir)
    t = project.glsl / "scale.comp.j2"
    t.write_text(t.read_text().replace("    y[i] = x[i] * pc.s  // missing semicolon\n", BROKEN))
    project.build()
    assert rewritten(before, files(project.build_dir)) == {"scale_plain", "scale_add"}


def test_glslc_failure_on_the_command_line(project, capsys):
    break_scale_plain(project)
    assert main(project.cli("--jobs", "1")) == 3
    err = capsys.readouterr().err
    src = project.build_dir / "src/scale_plain.comp"
    assert err.startswith("gemforge: error: kernel scale_plain does not compile: glslc failed (exit 1):\n  $ ")
    assert err.endswith(f"\n  fix: the rendered source is {src}; fix its template\n")
    assert f"{src}:" in err and "Traceback" not in err


def test_several_failures_are_all_named(project):
    t = project.glsl / "common.glsl.j2"
    t.write_text(t.read_text() + "this is not GLSL;\n")
    with pytest.raises(ToolError) as err:
        project.build()
    assert err.value.message.endswith(f"\n(and 3 more failing variants: copy_w4, scale_plain, scale_add)")
    assert not list((project.build_dir / "spirv").iterdir())
    assert mf.load(project.build_dir).artifacts == {}


def test_missing_glslc_is_exit_3_with_the_install_hint(project):
    """Without glslc on PATH: one line naming the tool and how to get it."""
    env = {**os.environ, "PATH": str(project.root / "no-tools-here")}
    proc = subprocess.run([sys.executable, "-m", "gemforge.runtime.cli", *project.cli()], env=env,
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (3, "")
    assert proc.stderr == ("gemforge: error: 'glslc' was not found on PATH (fix: install it: `sudo apt-get install "
                           "glslc` on Debian/Ubuntu (or `make setup`))\n")
