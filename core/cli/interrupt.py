"""Ctrl-C as a request to stop cleanly, for commands that can end part-way."""

import contextlib
import signal


class CtrlCStops:
    """While armed, Ctrl-C sets `requested` (and calling the object says so) instead of
    raising KeyboardInterrupt, so the work ends at its next safe point."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    @contextlib.contextmanager
    def armed(self):
        self.requested = False

        def on_interrupt(_signal, _frame):
            self.requested = True

        previous = signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
