#!/usr/bin/env bash
# Build the one-folder desktop bundle with PyInstaller: dist/oppu/ (and dist/OPPU.app on macOS).
#   bash packaging/build.sh            use the project's .venv (created by scripts/dev.sh setup)
#   VENV=/path/to/venv bash packaging/build.sh    build from another environment; its torch
#                                      and llama-cpp-python decide CPU or CUDA for the bundle
# Installs the `packaging` extra of pyproject.toml (PyInstaller) into that environment, then
# prints the bundle's size and the build time, and writes them to build/packaging-stats.json.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ -x "$VENV/bin/python" ]; then PY="$VENV/bin/python"
elif [ -x "$VENV/Scripts/python.exe" ]; then PY="$VENV/Scripts/python.exe"  # Windows (Git Bash)
else
    echo "no Python environment at $VENV: run 'bash scripts/dev.sh setup' first, or set VENV" >&2
    exit 1
fi

# The extra's requirements, read from pyproject.toml, so the versions live in one place.
mapfile -t REQUIREMENTS < <("$PY" -c 'import tomllib
for req in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["packaging"]:
    print(req)')
"$PY" -m pip install --quiet "${REQUIREMENTS[@]}"

"$PY" packaging/make_icons.py

start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level "${PYI_LOG_LEVEL:-WARN}" \
    --distpath dist --workpath build/pyinstaller packaging/oppu.spec
build_s=$(( $(date +%s) - start ))

if [ "$(uname -s)" = Linux ]; then
    # The bundle carries its own installer, uninstaller and retrain timer units.
    cp packaging/linux/install.sh packaging/linux/uninstall.sh dist/oppu/
    if [ -d packaging/systemd ]; then rm -rf dist/oppu/systemd; cp -r packaging/systemd dist/oppu/systemd; fi
fi

bundle=dist/oppu
if [ -d dist/OPPU.app ]; then bundle=dist/OPPU.app; fi
bundle_mb=$(du -sm "$bundle" | cut -f1)
mkdir -p build
printf '{"bundle": "%s", "bundle_mb": %s, "build_s": %s}\n' "$bundle" "$bundle_mb" "$build_s" \
    > build/packaging-stats.json
echo "built $bundle: ${bundle_mb} MB in ${build_s} s"
echo "run it: $bundle/oppu-desktop   (command line: $bundle/oppu --help)"
