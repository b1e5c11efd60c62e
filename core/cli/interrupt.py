"""Ctrl-C, or SIGTERM, as a request to stop cleanly, for commands that can end part-way.

SIGTERM (`kill`, `timeout`, a service manager) is treated as Ctrl-C everywhere in the
command line: otherwise it would end `oppu` at once and leave a training child, which runs
in its own session, training on with nobody watching."""

import contextlib
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def terminate_as_interrupt():
    """While inside, SIGTERM raises KeyboardInterrupt just as Ctrl-C does."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class CtrlCStops:
    """While armed, Ctrl-C (or SIGTERM) sets `requested` (and calling the object says so) instead of
    raising KeyboardInterrupt, so the work ends at its next safe point."""

    def __init__(self):
        self.requested = False
        self.terminated = False  # the request was SIGTERM: the whole command should end

    def __call__(self) -> bool:
        return self.requested

    @contextlib.contextmanager
    def armed(self):
        self.requested = False

        def on_interrupt(number, _frame):
            self.requested = True
            self.terminated |= number == signal.SIGTERM

        previous = {number: signal.signal(number, on_interrupt) for number in STOP_SIGNALS}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


class Terminated(Exception):
    """SIGTERM where Ctrl-C only clears a line: at an interactive prompt."""


@contextlib.contextmanager
def terminate_ends():
    """While inside, SIGTERM raises Terminated, so that `kill` ends a prompt loop."""
    def on_terminate(_signal, _frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
