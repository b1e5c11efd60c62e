"""The layer rules of DESIGN.md, checked on the source: who imports what, and module size."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = ["app", "core", "storage", "trainer", "engine", "bench", "tests", "packaging",
                  "scripts"]
# Each folder is a package of the `oppu` namespace; importing one bare is a bug.
LAYERS = ["app", "core", "storage", "trainer", "engine", "assets"]
# Which other layers a layer may import (the table in DESIGN.md).
MAY_IMPORT = {"storage": set(), "trainer": {"storage"}, "engine": {"storage"},
              "core": {"storage", "trainer", "engine"}, "app": {"core"}}
QT = {"PySide6", "shiboken6"}
HEAVY = ["torch", "llama_cpp", "PySide6"]
MAX_LINES = 500


def python_files() -> list[Path]:
    files = [p for folder in SOURCE_FOLDERS for p in (ROOT / folder).rglob("*.py")]
    return sorted(files + list(ROOT.glob("*.py")))


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in a file, those inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_the_scan_sees_the_project():
    names = {str(p.relative_to(ROOT)) for p in python_files()}
    assert {"storage/writing.py", "core/cli/__init__.py", "tests/test_layering.py"} <= names


def test_only_the_app_imports_qt():
    offenders = [f"{where(path, line)} imports {module}"
                 for path in python_files()
                 # packaging/ holds build tools (icons drawn with Qt), nothing importable
                 if path.relative_to(ROOT).parts[0] not in {"app", "tests", "packaging"}
                 for line, module in imported_modules(path) if module.split(".")[0] in QT]
    assert offenders == []


def test_imports_go_through_the_oppu_namespace():
    offenders = [f"{where(path, line)} imports {module}"
                 for path in python_files()
                 for line, module in imported_modules(path) if module.split(".")[0] in LAYERS]
    assert offenders == []


@pytest.mark.parametrize("layer", MAY_IMPORT)
def test_layers_import_only_the_layers_below(layer):
    allowed = MAY_IMPORT[layer] | {layer}
    offenders = [f"{where(path, line)} imports {module}"
                 for path in (ROOT / layer).rglob("*.py")
                 for line, module in imported_modules(path)
                 if module.startswith("oppu.") and module.split(".")[1] not in allowed]
    assert offenders == []


def test_modules_stay_small():
    too_long = {str(p.relative_to(ROOT)): n for p in python_files()
                if (n := len(p.read_text(encoding="utf-8").splitlines())) >= MAX_LINES}
    assert too_long == {}


LOADED_BY_IMPORT = """
import importlib, json, pkgutil, sys
import oppu.core, oppu.core.profile, oppu.core.cli
explicit = {name: name in sys.modules for name in HEAVY}
oppu.core.cli.build_parser()  # imports every command module, as `oppu --help` does
for module in pkgutil.walk_packages(oppu.core.__path__, "oppu.core."):
    if module.name != "oppu.core.__main__":
        importlib.import_module(module.name)
everything = {name: name in sys.modules for name in HEAVY}
print(json.dumps([explicit, everything]))
"""


def test_importing_core_loads_no_heavy_library(tmp_path):
    script = f"HEAVY = {HEAVY!r}\n" + LOADED_BY_IMPORT
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    explicit, everything = json.loads(done.stdout.splitlines()[-1])
    nothing = dict.fromkeys(HEAVY, False)
    assert explicit == nothing, "import oppu.core / .profile / .cli"
    assert everything == nothing, "importing every module of oppu.core"
