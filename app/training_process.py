"""The training child (`python -m oppu.trainer train`) driven by QProcess.

Core records the run and builds the command line (`create_run`, `training_argv`); this
class starts it, turns its JSON lines into signals with core's `parse_line`, asks it to
stop the way core's command line does (stop file, SIGTERM, SIGKILL after a grace), and
hands the ending to core's `settle_run`. A crash of torch in the child cannot take the
window with it.
"""

import sys

from PySide6.QtCore import QIODevice, QObject, QProcess, QTimer, Signal

from oppu.app.messages import describe
from oppu.core import training
from oppu.core.job_runner import KILL_AFTER_S, parse_line
from oppu.core.progress import Progress


class TrainingProcess(QObject):
    progress = Signal(object)  # Progress
    finished = Signal(object)  # core's RunOutcome
    failed = Signal(str)
    runningChanged = Signal(bool)

    def __init__(self, parent: QObject | None = None, kill_after_s: float = KILL_AFTER_S):
        super().__init__(parent)
        self.kill_after_ms = int(kill_after_s * 1000)
        self.process: QProcess | None = None
        self.profile = None
        self.run_id: int | None = None
        self.stop_requested = False
        self.last_progress: Progress | None = None
        self._buffer = b""
        self._killed = False

    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self, profile, reason: str = "manual", overrides: dict | None = None) -> int:
        """Record a run and start its child; core's errors (busy, no base model) propagate."""
        if self.running:
            raise training.TrainingBusy(f"training run {self.run_id} is still in progress")
        run_id = training.create_run(profile, overrides, reason=reason)
        argv = training.training_argv(profile, run_id)
        process = QProcess(self)
        process.setProgram(argv[0])
        process.setArguments(argv[1:])
        process.setStandardErrorFile(str(training.log_path(profile, run_id)),
                                     QIODevice.OpenModeFlag.Append)
        if sys.platform != "win32":  # its own session: a terminal's Ctrl-C reaches only us
            process.setUnixProcessParameters(QProcess.UnixProcessFlag.CreateNewSession)
        process.readyReadStandardOutput.connect(self._read)
        process.started.connect(lambda: training.set_pid(profile, run_id, process.processId()))
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self.process, self.profile, self.run_id = process, profile, run_id
        self.stop_requested, self._killed, self._buffer = False, False, b""
        self.last_progress = None
        process.start()
        self.runningChanged.emit(True)
        return run_id

    def cancel(self) -> None:
        """Ask the child to stop; it is killed if it has not ended after the grace period."""
        if not self.running or self.stop_requested:
            return
        self.stop_requested = True
        training.request_stop(self.profile, self.run_id)
        self.process.terminate()
        QTimer.singleShot(self.kill_after_ms, self.process, self.kill)

    def wait(self, msecs: int = 30_000) -> bool:
        return self.process is None or self.process.waitForFinished(msecs)

    def kill(self) -> None:
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self._killed = True
            self.process.kill()

    def _read(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            parsed = parse_line(line.decode("utf-8", "replace"))
            if isinstance(parsed, Progress):
                self.last_progress = parsed
                self.progress.emit(parsed)

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._finished(None, QProcess.ExitStatus.CrashExit)

    def _finished(self, code: int | None, status: QProcess.ExitStatus) -> None:
        if self.process is None:
            return  # FailedToStart already settled it
        self._read()
        if code is None:
            returncode = None
        elif status == QProcess.ExitStatus.CrashExit:
            returncode = -9 if self._killed else -abs(code or 15)  # Unix: the signal number
        else:
            returncode = code
        process, profile, run_id = self.process, self.profile, self.run_id
        self.process = None
        process.deleteLater()
        try:
            outcome = training.settle_run(profile, run_id, returncode, self.stop_requested)
        except Exception as error:  # noqa: BLE001 - e.g. the store went away meanwhile
            self.runningChanged.emit(False)
            self.failed.emit(f"training run {run_id} ended, but recording it failed: "
                             f"{describe(error)}")
            return
        self.runningChanged.emit(False)
        self.finished.emit(outcome)
