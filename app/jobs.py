"""Long work off the GUI thread: core's `report()`/`should_stop()` callbacks become Qt signals."""

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from oppu.app.messages import describe

# work(report, should_stop) -> result; `report` takes whatever the core function reports.
Work = Callable[[Callable[[Any], None], Callable[[], bool]], Any]


class JobSignals(QObject):
    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    ended = Signal()  # after succeeded or failed, whichever came


class Job(QRunnable):
    def __init__(self, name: str, work: Work, background: bool = False):
        super().__init__()
        self.name = name
        self.background = background  # touches no profile: need not end before a switch
        self.work = work
        self.signals = JobSignals()
        self._stop = threading.Event()
        self.error: BaseException | None = None  # what failed, for callers that offer a fix

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        try:
            result = self.work(self.signals.progress.emit, self._stop.is_set)
        except BaseException as error:  # noqa: BLE001 - every failure becomes a message
            self.error = error
            self.signals.failed.emit(describe(error))
        else:
            self.signals.succeeded.emit(result)
        self.signals.ended.emit()


class Jobs(QObject):
    """Runs jobs on a small thread pool and keeps each alive until it has ended."""

    busy_changed = Signal(bool)
    failed = Signal(str, str)  # job name, message: for jobs started without their own handler

    def __init__(self, parent: QObject | None = None, threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self.running: dict[str, Job] = {}

    def start(self, name: str, work: Work, done: Callable[[Any], None] | None = None,
              progress: Callable[[Any], None] | None = None,
              failed: Callable[[str], None] | None = None, background: bool = False) -> Job:
        """Run `work` in the pool; the callbacks run on the GUI thread."""
        job = Job(name, work, background)
        job.setAutoDelete(False)
        if done:
            job.signals.succeeded.connect(done)
        if progress:
            job.signals.progress.connect(progress)
        job.signals.failed.connect(failed or (lambda message: self.failed.emit(name, message)))
        job.signals.ended.connect(lambda: self._ended(job))
        was_idle = not self.running
        self.running[f"{name}#{id(job)}"] = job
        self.pool.start(job)
        if was_idle:
            self.busy_changed.emit(True)
        return job

    def busy(self) -> bool:
        """Whether a job that works on the profile is running (background ones do not count)."""
        return any(not job.background for job in self.running.values())

    def is_running(self, name: str) -> bool:
        return any(job.name == name for job in self.running.values())

    def stop_all(self) -> None:
        for job in self.running.values():
            job.stop()

    def wait(self, msecs: int = -1) -> bool:
        return self.pool.waitForDone(msecs)

    def _ended(self, job: Job) -> None:
        self.running.pop(f"{job.name}#{id(job)}", None)
        if not self.running:
            self.busy_changed.emit(False)
