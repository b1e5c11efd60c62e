"""How to start `python -m <module>` as a child process, installed or frozen.

Installed, a child is `sys.executable -m module`. A frozen bundle (PyInstaller) has no
Python interpreter to run: its executables accept a hidden first argument instead,
`--run-module module ...`, which the bundle's launcher hands to `run_module_from_argv`.
Everyone who starts a child of ours (the app's QProcess, the command line's subprocess)
builds its argv with `python_module_argv`, so both ways work without either knowing.
"""

import runpy
import sys

RUN_MODULE_FLAG = "--run-module"


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def python_module_argv(module: str, *args: str) -> list[str]:
    """The argv that runs `python -m module *args` in this installation."""
    if is_frozen():
        return [sys.executable, RUN_MODULE_FLAG, module, *args]
    return [sys.executable, "-m", module, *args]


def run_module_from_argv(argv: list[str]) -> bool:
    """If argv asks for `--run-module M ...`, run M as `__main__` and return True.

    Used by the bundle's launcher before it starts the app or the command line. The module
    sees `sys.argv == [executable, *args]`, as it would under `python -m`. Its SystemExit
    propagates, so the exit status is the module's.
    """
    if len(argv) < 2 or argv[1] != RUN_MODULE_FLAG:
        return False
    if len(argv) < 3 or not argv[2] or argv[2].startswith("-"):
        raise SystemExit(f"{RUN_MODULE_FLAG} needs a module name, e.g. {RUN_MODULE_FLAG} oppu.trainer")
    module = argv[2]
    sys.argv = [argv[0], *argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return True
