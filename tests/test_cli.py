"""The `gemforge` command line: --version, --help with examples everywhere, one-line errors with
documented exit codes, and `gemforge doctor`."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from gemforge.runtime import cli
from gemforge.runtime.errors import DeviceError, GemforgeError, ModelError, SpecError, ToolError

README = Path(__file__).resolve().parents[1] / "README.md"


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:  # argparse's --help, --version and usage errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_version(capsys):
    rc, out, err = run(capsys, "--version")
    assert (rc, out, err) == (0, f"gemforge {metadata.version('gemforge')}\n", "")


def test_every_command_has_help_with_examples(capsys):
    cli.parser()  # loads the plugin commands
    assert {"kernels", "doctor", "run", "chat"} <= set(cli.COMMANDS)
    for name in cli.COMMANDS:
        rc, out, err = run(capsys, name, "--help")
        assert rc == 0 and err == "", name
        examples = out.split("examples:\n", 1)
        assert len(examples) == 2, f"`gemforge {name} --help` shows no examples"
        assert re.search(rf"^  gemforge {name}\b", examples[1], re.M), f"`gemforge {name} --help`: {examples[1]!r}"


def test_top_level_help_lists_commands_and_exit_codes(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for name in cli.COMMANDS:
        assert re.search(rf"^    {name}\b", out, re.M), name
    assert "exit codes: 0 ok, 1 runtime failure, 2 bad spec/usage" in out


def test_no_command_prints_help_and_exits_2(capsys):
    rc, out, err = run(capsys)
    assert rc == 2 and "usage: gemforge" in out


def test_usage_error_exits_2(capsys):
    rc, out, err = run(capsys, "kernels", "--jobs", "many")
    assert rc == 2 and out == "" and "argument --jobs/-j: must be a positive integer, got 'many'" in err


@pytest.mark.parametrize("error, code", [(GemforgeError, 1), (SpecError, 2), (ToolError, 3), (DeviceError, 4),
                                         (ModelError, 5)])
def test_errors_are_one_line_on_stderr_with_their_exit_code(capsys, monkeypatch, error, code):
    def fail(args):
        raise error("the thing at fault: 'value'", hint="do this")
    monkeypatch.setitem(cli.COMMANDS, "doctor", (*cli.COMMANDS["doctor"][:2], fail, ""))
    rc, out, err = run(capsys, "doctor")
    assert (rc, out, err) == (code, "", "gemforge: error: the thing at fault: 'value' (fix: do this)\n")


def test_interrupt_exits_130(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setitem(cli.COMMANDS, "doctor", (*cli.COMMANDS["doctor"][:2], interrupted, ""))
    assert run(capsys, "doctor") == (130, "", "gemforge: interrupted\n")


def test_readme_documents_every_exit_code():
    text = README.read_text()
    for code in (0, 1, 2, 3, 4, 5, 130):
        assert re.search(rf"^\| {code} \|", text, re.M), f"README has no exit-code row for {code}"


# ---- gemforge doctor ---------------------------------------------------------------------------------

def _devices():
    try:
        from gemforge.runtime.vulkan import list_devices
        return list_devices()
    except GemforgeError:
        return []


def doctor(capsys, monkeypatch, build_dir, *args) -> tuple[int, list[str], str]:
    monkeypatch.setenv("GEMFORGE_BUILD_DIR", str(build_dir))
    rc, out, err = run(capsys, "doctor", *args)
    return rc, out.splitlines(), err


def line(lines: list[str], what: str) -> str:
    hits = [ln for ln in lines if re.match(rf"\[(ok  |warn|MISS|info)\] {re.escape(what)}: ", ln)]
    assert len(hits) == 1, f"no single '{what}' line in:\n" + "\n".join(lines)
    return hits[0]


def test_doctor_reports_devices_tools_and_an_up_to_date_build(build, capsys, monkeypatch):
    rc, lines, err = doctor(capsys, monkeypatch, build)
    glslc = subprocess.run(["glslc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    assert line(lines, "glslc") == f"[ok  ] glslc: {glslc}"
    n = len(json.loads((build / "manifest.json").read_text())["artifacts"])
    assert re.fullmatch(rf"\[ok  \] kernel build: {n} artifacts in {re.escape(str(build))} \(compiler .*\), "
                        r"up to date with the specs", line(lines, "kernel build"))
    assert line(lines, "gemforge").startswith(f"[info] gemforge: {metadata.version('gemforge')} on Python 3.")
    devs = _devices()
    for d in devs:
        assert line(lines, f"vulkan device {d.index}").startswith(f"[ok  ] vulkan device {d.index}: {d.describe()}")
    software_only = bool(devs) and all(d.is_software for d in devs)
    if software_only:  # honest about it: a warning with the fix, not an "ok"
        assert line(lines, "hardware GPU").startswith("[warn] hardware GPU: none found: runs will use ")
        assert lines[lines.index(line(lines, "hardware GPU")) + 1].startswith("       fix: install your GPU's")
    assert rc == (0 if devs else 1), "\n".join(lines)
    assert err == ""


def test_doctor_without_a_build_says_how_to_make_one(tmp_path, capsys, monkeypatch):
    rc, lines, _ = doctor(capsys, monkeypatch, tmp_path)
    kb = line(lines, "kernel build")
    assert kb == f"[MISS] kernel build: no kernel build at {tmp_path / 'manifest.json'}"
    assert lines[lines.index(kb) + 1] == "       fix: run `make kernels` (or `gemforge kernels`) first"
    assert rc == 1


def test_doctor_finds_an_out_of_date_build(build, tmp_path, capsys, monkeypatch):
    stale = tmp_path / "build"
    shutil.copytree(build, stale, ignore=shutil.ignore_patterns(".lock"))
    m = json.loads((stale / "manifest.json").read_text())
    vulkan = sorted(n for n, a in m["artifacts"].items() if a["target"] == "vulkan")  # (npu designs: tests/npu)
    name = vulkan[0]
    m["artifacts"][name]["hash"] = "0" * 64
    (stale / "manifest.json").write_text(json.dumps(m))
    rc, lines, _ = doctor(capsys, monkeypatch, stale)
    kb = line(lines, "kernel build")
    assert kb.startswith("[MISS] kernel build: ") and kb.endswith(
        f"; 1 of {len(vulkan)} variants out of date (e.g. {name})")
    assert lines[lines.index(kb) + 1] == "       fix: run `make kernels` (or `gemforge kernels`)"
    assert rc == 1


def test_doctor_require_hardware(build, capsys, monkeypatch):
    devs = _devices()
    rc, lines, err = doctor(capsys, monkeypatch, build, "--require-hardware")
    if devs and not all(d.is_software for d in devs):
        assert rc == 0 and err == ""
    else:
        assert rc == 4
        assert err == "gemforge: error: no hardware GPU (--require-hardware) (fix: see the lines above)\n"
        if devs:
            assert line(lines, "hardware GPU").startswith("[MISS] hardware GPU: none found")


@pytest.mark.parametrize("burst", ["0", "33"])
def test_burst_outside_its_range_is_one_line_before_loading(capsys, burst):
    """--burst is checked before the model loads (no device or model file needed to fail)."""
    rc, out, err = run(capsys, "run", "--prompt", "x", "--model", "/nonexistent.gguf", "--burst", burst)
    assert (rc, out) == (5, "")
    assert err == f"gemforge: error: --burst {burst} is outside 1..32 (fix: use --burst 1 to 32 (1: wait for every token))\n"
