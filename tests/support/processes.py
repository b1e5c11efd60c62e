"""Process ids for tests of what a killed process leaves behind."""

import subprocess
import sys


def dead_pid() -> int:
    """The id of a process that has ended (until the system hands it out again)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)
