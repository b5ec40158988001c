"""Packaging: a built wheel and an editable install both give working `gemforge.gen`, `gemforge.runtime`,
their package data (templates, configs) and the `gemforge` console script.

Both are made from a copy of the checkout in a temp dir (building in place would litter build/).
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"gen": "gen", "runtime": "runtime", "templates": "templates", "configs": "configs"}
DATA_DIRS = ("templates", "configs")

PROBE = r"""
import json, gemforge.gen, gemforge.runtime
from gemforge.gen.build import load_tuning, plan
from gemforge.gen.spec import load_specs
from gemforge.runtime import paths
from gemforge.runtime.config import model_configs
tdir = paths.templates_dir() / "glsl"
specs = load_specs(paths.configs_dir() / "ops", tdir)
planned = plan(specs, model_configs(), tdir, "", load_tuning(paths.configs_dir() / "tuning", specs))
print(json.dumps({"gen": gemforge.gen.__file__, "runtime": gemforge.runtime.__file__,
                  "configs": str(paths.configs_dir()), "templates": str(paths.templates_dir()),
                  "checkout": str(paths.source_checkout()), "ops": sorted(specs), "variants": len(planned)}))
"""


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, f"$ {' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


def data_files(base: Path) -> set[str]:
    """Files under templates/ and configs/ (not Python), relative to ``base``."""
    return {str(p.relative_to(base)) for d in DATA_DIRS for p in (base / d).rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc")}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The package's files, copied from the working tree."""
    src = tmp_path_factory.mktemp("pkg") / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    for d in PACKAGE_DIRS:
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def probe(python, env) -> dict:
    return json.loads(sh([python, "-c", PROBE], env=env, cwd="/").stdout)


def expected_probe(tree: Path) -> dict:
    """What PROBE should print for the specs in ``tree`` (the checkout's own configs)."""
    return {"ops": sorted(p.stem for p in (tree / "configs/ops").glob("*.yaml"))}


def test_wheel(source, tmp_path):
    dist, site = tmp_path / "dist", tmp_path / "site"
    sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, source])
    [wheel] = dist.glob("gemforge-*.whl")
    sh([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel])

    pkg = site / "gemforge"
    assert data_files(pkg) == data_files(source), "package data missing from the wheel"
    env = {**os.environ, "PYTHONPATH": str(site), "GEMFORGE_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("GEMFORGE_BUILD_DIR", None)
    got = probe(sys.executable, env)
    assert got["gen"] == str(pkg / "gen/__init__.py") and got["runtime"] == str(pkg / "runtime/__init__.py")
    assert (got["configs"], got["templates"]) == (str(pkg / "configs"), str(pkg / "templates"))
    assert got["checkout"] == "None"                    # an installed wheel is not a source checkout
    assert got["ops"] == expected_probe(ROOT)["ops"] and got["variants"] > 0

    gemforge = site / "bin/gemforge"
    assert sh([gemforge, "--version"], env=env).stdout == "gemforge 0.1.0\n"
    # the wheel builds kernels from its own package data, into the cache by default
    op = got["ops"][0]
    proc = sh([gemforge, "kernels", "--op", op], env=env)
    manifest = json.loads((tmp_path / "cache/build/manifest.json").read_text())
    assert manifest["artifacts"] and {a["op"] for a in manifest["artifacts"].values()} == {op}, proc.stderr


def test_editable_install(source, tmp_path):
    venv = tmp_path / "venv"
    sh([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin/python"
    # the dependencies come from this interpreter's environment (a venv of its own, or not), appended
    # after the new venv's site-packages; .pth files there (this checkout's editable finder) stay inactive
    [venv_site] = venv.glob("lib/python*/site-packages")
    (venv_site / "zz_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    sh([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-build-isolation",
        "-e", source])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GEMFORGE_BUILD_DIR")}
    got = probe(python, env)
    # imports come from the source tree itself, so edits there take effect without reinstalling
    assert (got["gen"], got["runtime"]) == (str(source / "gen/__init__.py"), str(source / "runtime/__init__.py"))
    assert (got["configs"], got["templates"], got["checkout"]) == (str(source / "configs"),
                                                                   str(source / "templates"), str(source))
    assert got["ops"] == expected_probe(source)["ops"] and got["variants"] > 0
    spec = (source / "configs/ops" / f"{got['ops'][0]}.yaml").read_text()
    probe_spec = spec.replace(f"op: {got['ops'][0]}\n", "op: zz_probe\n", 1).replace('\nname: "', '\nname: "zz_', 1)
    assert probe_spec.count("zz_") == 2, "could not derive a probe spec"
    (source / "configs/ops/zz_probe.yaml").write_text(probe_spec)
    try:
        assert "zz_probe" in probe(python, env)["ops"]
    finally:
        (source / "configs/ops/zz_probe.yaml").unlink()
    assert sh([venv / "bin/gemforge", "--version"], env=env).stdout == "gemforge 0.1.0\n"
