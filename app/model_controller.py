"""Wires the My model page to core: training runs, versions, adapter files and base models."""

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

from oppu.app.messages import describe, sentence
from oppu.app.model_page import PHASES, ModelPage
from oppu.app.training_process import TrainingProcess
from oppu.core import adapter_files, adapters, bases, evaluation, training
from oppu.core.policy import retrain_due
from oppu.core.progress import Progress

# Where each phase of a run sits in the overall bar, as (start, width) in percent.
# How often the page looks for a run another process started (the timer, `oppu train`).
WATCH_MS = 3000
PHASE_SPANS = {"prepare": (0, 10), "dataset": (10, 5), "evaluate": (15, 5), "train": (20, 65),
               "evaluate-after": (85, 10), "save": (95, 5)}


def training_percent(progress: Progress) -> int:
    """One 0–100 figure for a whole run from the phase the child reports."""
    phase, fraction = progress.phase, progress.fraction
    if phase == "evaluate":  # steps 0-1: base (and active) before training; 2-3: the new one
        after = progress.done >= 2
        phase = "evaluate-after" if after else "evaluate"
        fraction = (progress.done - 2) / max(progress.total - 2, 1) if after else progress.done / 2
    start, width = PHASE_SPANS.get(phase, (0, 0))
    return max(0, min(100, round(start + width * min(max(fraction, 0.0), 1.0))))


class ModelController(QObject):
    versionsChanged = Signal()
    trainingChanged = Signal(bool)

    def __init__(self, app, page: ModelPage):
        super().__init__(app)
        self.app = app
        self.page = page
        self.training = TrainingProcess(self)
        self.training.progress.connect(self._training_progress)
        self.training.finished.connect(self._training_finished)
        self.training.failed.connect(self._training_failed)
        self.training.runningChanged.connect(self.trainingChanged)
        self.download_job = None
        self.training_overrides: dict | None = None  # trainer config fields for every run
        page.retrainRequested.connect(lambda: self.start_training("manual"))
        page.cancelRetrainRequested.connect(self.cancel_training)
        page.activateRequested.connect(self.activate)
        page.rollbackRequested.connect(lambda: self._change(
            adapters.rollback, done=lambda back: f"Rolled back: {back.version} is active again."))
        page.deactivateRequested.connect(lambda: self._change(
            adapters.deactivate, done="Chat now uses the base model alone."))
        page.deleteVersionRequested.connect(lambda v: self._change(adapters.delete, v,
                                                                   done=f"{v} deleted."))
        page.evaluation.evaluateRequested.connect(self.evaluate)
        page.evaluation.stopRequested.connect(self.stop_evaluation)
        self.evaluation_job = None
        page.exportRequested.connect(self.export)
        page.importRequested.connect(self.import_adapter)
        page.base_card.baseModelRequested.connect(self.use_base)
        page.base_card.downloadRequested.connect(self.download)
        page.base_card.cancelDownloadRequested.connect(self.cancel_download)
        app.profileOpened.connect(self._profile_opened)
        app.writingReady.connect(self.refresh)
        app.writingReady.connect(self._load_quantizations)
        self.elsewhere: int | None = None  # a live run of the profile's that another process runs
        self._watch = QTimer(self, interval=WATCH_MS, timeout=self.watch_other_runs)
        self._watch.start()

    # -- showing ------------------------------------------------------------------------

    def _profile_opened(self, _profile) -> None:
        self._show_last_run()
        if self.elsewhere is not None:  # that was the last profile's run
            self.elsewhere = None
            self.page.training_finished()
            self.app.window.set_training(None)
        self.refresh()
        self.watch_other_runs()

    def watch_other_runs(self) -> None:
        """A run another process started (the background timer, `oppu train`) shows here as
        running, can be stopped here, and its outcome is told here when it ends."""
        profile = self.app.profile
        if profile is None or self.training.running:
            return
        try:
            if self.elsewhere is not None:  # its process may have died without a word
                training.recover_interrupted(profile)
            run_id = training.live_run(profile)
        except Exception:  # noqa: BLE001 - the store is busy or gone: look again later
            return
        if run_id is not None and self.elsewhere is None:
            self.elsewhere = run_id
            self.page.training_started("Training in another process (the background timer "
                                       "or a terminal)")
            self.app.window.set_training("in another process")
        elif run_id is None and self.elsewhere is not None:
            ended, self.elsewhere = self.elsewhere, None
            self._training_finished(training.outcome_of(profile, ended))

    def refresh(self) -> None:
        profile = self.app.profile
        if profile is None:
            return
        try:
            current, versions = adapters.active(profile), adapters.list_adapters(profile)
            self.page.show_active(current, None,
                                  evaluation.evaluation_in(current.metrics) if current else None,
                                  has_versions=bool(versions),
                                  unmeasurable=current and evaluation.unavailable_reason(profile))
            self.page.show_versions(versions)
            self.page.base_card.set_choices(bases.bases(), profile.settings.base_model)
            self.page.base_card.set_downloads(bases.curated())
            if self.app.writing_open:
                due, reason = retrain_due(profile)
                self.page.show_due((f"A retrain is due: {reason}" if due else sentence(reason))
                                   + ".")
        except Exception as error:  # noqa: BLE001
            self.app.report_error(self.page.banner, error)
            return
        self.app.window.set_adapter(current.version if current else None, bool(versions))
        self.app.chat_page.set_personal_model(current is not None, bool(versions))
        self.versionsChanged.emit()
        if current is not None:
            self._check_base(current, profile.settings.base_model)

    def _check_base(self, current, base_setting: str) -> None:
        """In the background: hashing a large base the first time takes seconds (one
        check at a time; the refresh after it checks again if something changed)."""
        if self.app.jobs.is_running("base-check"):
            return
        profile = self.app.profile

        def done(other: bool) -> None:
            if self.app.profile is not profile:
                return
            if profile.settings.base_model != base_setting:
                QTimer.singleShot(0, self.refresh)  # changed meanwhile: once this job ended
            elif other:
                self.page.show_other_base(current.version, current.base_name or "unknown")

        self.app.jobs.start("base-check", lambda _report, _stop: adapters.made_for_another_base(
            current, base_setting), done, failed=lambda _message: None, background=True)

    def activate(self, version: str) -> None:
        self._change(adapters.activate, version, done=f"{version} is now active.")

    def _change(self, action, *args, done) -> None:
        """`done`: the success message, or a function of what `action` returned that makes it."""
        try:
            changed = action(self.app.profile, *args)
        except Exception as error:  # noqa: BLE001 - core's one-line AdapterError and others
            self.app.report_error(self.page.banner, error)
        else:
            self.page.banner.show_message(done(changed) if callable(done) else done, "success", 5)
            if isinstance(changed, adapters.AdapterVersion):  # activated: serve it merged
                self._restore_merged_copy(changed.version)
        self.refresh()

    def _restore_merged_copy(self, version: str) -> None:
        """Chat attaches the adapter until the copy is there (about 11 s)."""
        profile = self.app.profile
        self.app.jobs.start("merge", lambda _report, _stop: adapters.restore_merged_copy(
            profile, version))

    # -- training -----------------------------------------------------------------------

    def start_training(self, reason: str = "manual") -> bool:
        if self.training.running or self.elsewhere is not None:
            return False
        if not self.app.writing_ready(self.page.banner, "retrain"):
            return False
        if self.evaluation_job is not None:  # two models in memory: for a large base, too much
            self.page.banner.show_message("Measuring is running: retrain when it ends, or "
                                          "stop it first.", "info", 6)
            return False
        self.page.banner.hide()  # an earlier run's outcome is old news now
        try:
            self.training.start(self.app.profile, reason, self.training_overrides)
        except training.NotEnoughWriting as error:  # expected on a new profile: not a failure
            self.page.banner.show_message(describe(error), "info")
            return False
        except Exception as error:  # noqa: BLE001 - busy, no base model, …
            self.app.report_error(self.page.banner, error)
            self.watch_other_runs()  # busy with another process's run: show it now
            return False
        self.page.training_started()
        self.app.window.set_training(PHASES["starting"].lower(), 0)
        if reason != "manual":
            self.page.banner.show_message("Retraining in the background: you have enough new "
                                          "writing.", "info", 8)
        return True

    def cancel_training(self) -> None:
        if self.elsewhere is not None:
            training.request_stop(self.app.profile, self.elsewhere)  # its child sees the file
        else:
            self.training.cancel()
        self.page.training_stopping()

    def _training_progress(self, progress: Progress) -> None:
        percent = training_percent(progress)
        self.page.training_progress(progress, percent)
        self.app.window.set_training(
            PHASES.get(progress.phase, progress.phase).lower(), percent)

    def _show_last_run(self, ended: int | None = None) -> None:
        """The newest recorded curve; the one drawn live stays if run `ended` recorded none
        (killed before it could)."""
        try:
            curve = training.last_loss_curve(self.app.profile)
        except Exception:  # noqa: BLE001 - the store is busy: the plot is only a picture
            curve = None
        if self.page.plot.points and ended is not None and (curve is None
                                                            or curve.run_id != ended):
            return
        self.page.show_last_run(curve)

    def _training_finished(self, outcome) -> None:
        self.page.training_finished()
        self._show_last_run(outcome.run_id)
        self.app.window.set_training(None)
        # The decision reads "promoted: held-out perplexity … beats …" or "not promoted: …".
        why = outcome.decision.partition(": ")[2] if outcome.status == "succeeded" else ""
        if outcome.status == "succeeded" and outcome.promoted:
            text, kind = f"Your new model {outcome.version} is active: {why}.", "success"
        elif outcome.status == "succeeded":
            text, kind = f"{outcome.version} was trained but not made active: {why}.", "info"
        elif outcome.status == "cancelled":
            text, kind = "Training stopped. Nothing changed.", "info"
        else:
            text, kind = f"Training failed: {outcome.error}", "error"
        self.notify(text, kind)
        self.refresh()

    def notify(self, text: str, kind: str) -> None:
        """Tell the user on this page, and on the page they are on; flash a hidden window."""
        for banner in {self.page.banner, self.app.current_banner()}:
            banner.show_message(text, kind, 30)
        QApplication.alert(self.app.window)

    def _training_failed(self, message: str) -> None:
        self.page.training_finished()
        self._show_last_run()
        self.app.window.set_training(None)
        self.notify(message, "error")
        self.refresh()

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(self) -> None:
        """`oppu eval` for the active version, off the GUI thread; the result is stored."""
        if self.evaluation_job is not None:
            return
        if self.training.running or self.elsewhere is not None:
            self.page.banner.show_message("Training is running: measure when it ends.", "info", 6)
            return
        profile, view = self.app.profile, self.page.evaluation
        self.page.banner.hide()
        view.started()

        def done(result) -> None:
            self.evaluation_job = None
            view.finished()
            self.refresh()
            self.page.banner.show_message(
                f"Measured {result.version}: with your writing, "
                f"{result.reduction_vs_base * 100:.0f}% lower perplexity than the base model on "
                "your held-out writing.", "success", 15)

        def failed(message: str) -> None:
            stopped = self.evaluation_job.stopping
            self.evaluation_job = None
            view.finished()
            self.refresh()  # what made it fail (deleted files or writing) may show there too
            if stopped:
                self.page.banner.show_message("Measuring stopped. Nothing changed.", "info")
            else:
                self.page.banner.show_message(f"Not measured: {message}", "error")

        self.evaluation_job = self.app.jobs.start(
            "evaluate", lambda report, stop: evaluation.evaluate_profile(
                profile, report=report, should_stop=stop), done,
            progress=view.report, failed=failed)

    def stop_evaluation(self) -> None:
        if self.evaluation_job is not None:
            self.evaluation_job.stop()

    # -- adapter files ------------------------------------------------------------------

    def _load_quantizations(self) -> None:
        """The merged model's types (llama.cpp's list loads with the merge code, so later)."""
        if not self.app.jobs.is_running("quantizations"):
            self.app.jobs.start("quantizations",
                                lambda _r, _s: list(adapter_files.quant_choices()),
                                lambda types: setattr(self.page, "quantizations", types),
                                failed=lambda _message: None,  # the two direct types remain
                                background=True)

    def export(self, format: str, quantization: str | None, path) -> None:
        profile, version = self.app.profile, self.page.active_version
        self.page.file_job_started(f"Exporting {version}…")

        def done(written) -> None:
            self.page.file_job_finished()
            self.page.banner.show_message(f"Exported {version} to {written}", "success", 15)

        def failed(message: str) -> None:
            self.page.file_job_finished()
            self.page.banner.show_message(f"Export failed: {message}", "error")

        self.app.jobs.start("export", lambda report, _stop: adapter_files.export(
            profile, version, format, quantization, path, report, overwrite=True), done,
            progress=self.page.file_job_progress, failed=failed)

    def import_adapter(self, path, force: bool = False) -> None:
        profile = self.app.profile
        self.page.file_job_started(f"Checking {path.name}…")

        def done(version) -> None:
            self.page.file_job_finished()
            self.refresh()
            self.page.banner.show_message(
                f"Imported {path.name} as {version.version}.", "success", 30,
                action=(f"Activate {version.version}", lambda: self.activate(version.version)))

        def failed(message: str) -> None:
            self.page.file_job_finished()
            if isinstance(job.error, adapter_files.AlreadyStored):  # nothing wrong: say where
                stored = job.error.version
                self.page.banner.show_message(
                    f"{path.name} is already stored as {stored}: " + (
                        "its training summary, missing there, was added from this file."
                        if job.error.summary_added else "nothing to import."), "info",
                    action=None if stored == self.page.active_version else (
                        f"Activate {stored}", lambda: self.activate(stored)))
                return
            foreign = isinstance(job.error, adapter_files.ForeignBase)
            self.page.banner.show_message(
                f"Not imported: {message}" + (". It can be imported anyway if its shapes fit "
                                              "this base model." if foreign else ""),
                "error", action=("Import anyway", lambda: self.import_adapter(path, force=True))
                if foreign else None)

        job = self.app.jobs.start("import-adapter", lambda _report, _stop: (
            adapter_files.import_adapter(profile, path, force=force)), done, failed=failed)

    # -- base models --------------------------------------------------------------------

    def use_base(self, setting: str) -> None:
        try:
            bases.use_base(self.app.profile, setting)
        except Exception as error:  # noqa: BLE001 - not a GGUF we can use
            self.app.report_error(self.page.banner, error)
        else:
            self.page.banner.show_message("Base model changed. Retrain to build your model "
                                          "on it.", "success", 8)
            self.app.base_model_changed()
        self.refresh()

    def download(self, key: str) -> None:
        if self.download_job is not None:
            return
        model = next(e.model for e in bases.curated() if e.model.key == key)
        self.page.base_card.download_started()

        def done(_path) -> None:
            self.download_job = None
            self.page.base_card.download_finished()
            self.use_base(key)

        def failed(message: str) -> None:
            self.download_job = None
            self.page.base_card.download_finished()
            self.page.banner.show_message(f"Download failed: {message}", "error")

        self.download_job = self.app.jobs.start(
            "download", lambda report, stop: bases.download_base(model, report, stop), done,
            progress=self.page.base_card.download_progress, failed=failed)

    def cancel_download(self) -> None:
        if self.download_job is not None:
            self.download_job.stop()

    def shutdown(self) -> None:
        """Closing the window stops a run: the run is recorded as cancelled, nothing lost."""
        if self.training.running:
            self.training.cancel()
            if not self.training.wait(20_000):
                self.training.kill()
                self.training.wait(5_000)
