"""The process's standard error, which C libraries (llama.cpp) write to directly.

Redirecting it swaps file descriptor 2 for the whole process, so every redirection, from
whichever thread, holds `REDIRECT_LOCK`: two at once could leave stderr pointing at a file
already gone for the rest of the session.
"""

import contextlib
import os
import sys
import threading

REDIRECT_LOCK = threading.RLock()


@contextlib.contextmanager
def stderr_to(file):
    """Send stderr to `file` for a while: file descriptor 2 (C code's prints) and Python's
    `sys.stderr` (llama-cpp-python relays llama.cpp's log through it)."""
    with REDIRECT_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(file.fileno(), 2)
        try:
            with open(2, "w", closefd=False) as stream, contextlib.redirect_stderr(stream):
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
