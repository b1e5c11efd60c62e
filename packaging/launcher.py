"""The bundle's one entry script, shared by both of its executables.

`oppu-desktop` opens the window and `oppu` is the command line, told apart by the name
they were started as (on Linux `oppu-desktop` is a link to `oppu`). Either one also runs
`--run-module M ...`, which is how a frozen bundle starts its child processes (see
oppu.core.child_process), since it has no `python -m`.
"""

import multiprocessing
import sys
from pathlib import Path


def main() -> int:
    multiprocessing.freeze_support()
    from oppu.core.child_process import run_module_from_argv

    if run_module_from_argv(sys.argv):
        return 0
    if Path(sys.argv[0]).stem == "oppu-desktop":  # on Linux a link to the one executable
        from oppu.app.main import main as entry
    else:
        from oppu.core.cli import main as entry
    return entry() or 0


if __name__ == "__main__":
    sys.exit(main())
