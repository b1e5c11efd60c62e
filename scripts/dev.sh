#!/usr/bin/env bash
# One entry point for developers and CI:
#   bash scripts/dev.sh run    create .venv if needed, install, start the desktop app
#   bash scripts/dev.sh test   create .venv if needed, install, run the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
PY=${PYTHON:-python3}

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
            || { echo "OPPU needs Python 3.11 or newer" >&2; exit 1; }
        "$PY" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        # torch first, by exact version: the CPU build, not a multi-GB CUDA one.
        "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
        "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
        touch "$stamp"
    fi
}

case "${1:-run}" in
    setup) setup ;;
    run) setup; exec "$VENV/bin/oppu-desktop" "${@:2}" ;;
    test)
        setup
        export QT_QPA_PLATFORM=offscreen
        exec "$VENV/bin/python" -m pytest "${@:2}"
        ;;
    *) echo "usage: $0 [run|test|setup]" >&2; exit 2 ;;
esac
