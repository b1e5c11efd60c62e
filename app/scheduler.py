"""Scheduled retraining while the app is open: a timer asks core's policy if a run is due.

(While the app is closed, the systemd timer or launchd agent in packaging/ runs
`oppu train --if-due`, which asks the same policy.)
"""

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

CHECK_EVERY_S = 15 * 60
FIRST_CHECK_S = 3 * 60  # let the window settle and the user start before the first check
IDLE_AFTER_S = 5 * 60  # "only when idle": no keyboard or mouse input for this long
INPUT_EVENTS = {QEvent.Type.KeyPress, QEvent.Type.MouseButtonPress, QEvent.Type.Wheel}


class RetrainScheduler(QObject):
    """Calls `start("scheduled")` when core's `retrain_due(profile)` says so."""

    checked = Signal(bool, str)  # due, core's reason

    def __init__(self, profile: Callable[[], object], busy: Callable[[], bool],
                 start: Callable[[str], bool], parent: QObject | None = None,
                 every_s: float = CHECK_EVERY_S, first_s: float = FIRST_CHECK_S):
        super().__init__(parent)
        self.profile = profile
        self.busy = busy
        self.start = start
        self.last_input = time.monotonic()
        self.timer = QTimer(self, interval=int(every_s * 1000), timeout=self.check)
        QTimer.singleShot(int(first_s * 1000), self, self._begin)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    def _begin(self) -> None:
        self.check()
        self.timer.start()

    def idle_s(self) -> float:
        return time.monotonic() - self.last_input

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in INPUT_EVENTS:
            self.last_input = time.monotonic()
        return False

    def check(self) -> bool:
        """Ask the policy now; start a run if it is due and the moment suits. True if started."""
        from oppu.core.policy import retrain_due

        profile = self.profile()
        if profile is None or self.busy():
            return False
        try:
            due, reason = retrain_due(profile)
        except Exception as error:  # noqa: BLE001 - a check that fails waits for the next one
            self.checked.emit(False, f"could not check: {error}")
            return False
        if due and profile.settings.retrain_only_idle and self.idle_s() < IDLE_AFTER_S:
            due, reason = False, f"{reason}; waiting until you are idle"
        self.checked.emit(due, reason)
        return due and self.start("scheduled")
