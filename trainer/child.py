"""What our child processes share: JSON lines on stdout, and stopping when asked.

The parent reads one JSON object per line: progress (`phase`, `step`, `total`, and
optionally `loss`, `tokens_per_s`, `eta_s`, `message`), then one `{"result": {...}}`.
Libraries that print would corrupt that stream, so the real stdout is kept for the
protocol alone and file descriptor 1 is pointed at stderr (the log).

A stop request is SIGTERM or a stop file appearing. Either sets a flag that the work
polls; outside a critical section it also raises `StopRequested` at once, so a stop is
honoured within seconds even during a long library call (loading a model, a download).
"""

import json
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

STOP_POLL_S = 0.5
EXIT_OK, EXIT_FAILED, EXIT_STOPPED = 0, 1, 3


class StopRequested(BaseException):
    """Raised in the child when it was asked to stop. A BaseException, so that library
    code catching `Exception` cannot swallow it."""


class Protocol:
    """The JSON-line channel to the parent; silently closed if the parent went away."""

    def __init__(self, stream: TextIO | None = None):
        if stream is None:
            stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
            sys.stdout.flush()
            os.dup2(2, 1)
            sys.stdout = sys.stderr
        self._stream = stream

    def emit(self, record: dict) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(json.dumps(record, default=str) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            self._stream = None  # the parent is gone; the work goes on and records itself

    def result(self, **fields) -> None:
        self.emit({"result": fields})


class StopControl:
    def __init__(self, stop_file: Path | None = None):
        self.stop_file = stop_file
        self.requested = False
        self._critical = 0
        self._done = threading.Event()

    def install(self) -> "StopControl":
        signal.signal(signal.SIGTERM, self._on_signal)
        if self.stop_file is not None:
            threading.Thread(target=self._watch, name="stop-file", daemon=True).start()
        return self

    def should_stop(self) -> bool:
        return self.requested

    def check(self) -> None:
        if self.requested:
            raise StopRequested()

    @contextmanager
    def critical(self):
        """A section a stop request must not cut short (committing the finished work)."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1

    def close(self) -> None:
        self._done.set()

    def _on_signal(self, _signum, _frame) -> None:
        # Only the first request interrupts: a second one (the stop file's SIGTERM after the
        # parent's) would otherwise cut short the recording of the first.
        first = not self.requested
        self.requested = True
        if first and not self._critical:
            raise StopRequested()

    def _watch(self) -> None:
        while not self._done.wait(STOP_POLL_S):
            if self.stop_file.exists():
                os.kill(os.getpid(), signal.SIGTERM)  # interrupt the main thread too
                return
