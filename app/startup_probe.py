"""For bench/startup.py: print the wall-clock time of the window's first expose (or of the
profile being ready), then quit."""

import time

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtGui import QWindow
from PySide6.QtWidgets import QApplication, QWidget

PREFIX = "oppu-window-exposed"
READY = "oppu-ready"


def stamp(prefix: str) -> None:
    print(f"{prefix} {time.time():.6f}", flush=True)
    QTimer.singleShot(0, QApplication.instance().quit)


class _FirstExpose(QObject):
    def __init__(self, window: QWindow):
        super().__init__(window)
        self.window = window
        self.seen = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if not self.seen and event.type() == QEvent.Type.Expose and self.window.isExposed():
            self.seen = True
            stamp(PREFIX)
        return False


def report_first_expose(window: QWidget) -> None:
    """Call right after `window.show()`: exposure arrives later, through the event loop."""
    handle = window.windowHandle()
    handle.installEventFilter(_FirstExpose(handle))


def report_ready(controller) -> None:
    """Print when the profile is open and its writing listed, then quit."""
    controller.writingReady.connect(lambda: stamp(READY))
