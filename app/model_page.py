"""My model: the active adapter, Retrain with live progress, versions, files, base model."""

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QWidget,
)

from oppu.app import widgets
from oppu.app.base_model_card import BaseModelCard
from oppu.app.evaluation_view import EvaluationView
from oppu.app.export_dialog import ask_export
from oppu.app.list_models import number, versions_model
from oppu.app.loss_plot import LossPlot
from oppu.app.tables import FittingTable
from oppu.app.widgets import button, card, card_grid, hint, page_layout, show_progress
from oppu.core.times import local_time

PHASES = {"prepare": "Preparing the base model", "dataset": "Laying out your writing",
          "evaluate": "Measuring", "train": "Training", "save": "Saving your model",
          "starting": "Starting"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


class ModelPage(QWidget):
    retrainRequested = Signal()
    cancelRetrainRequested = Signal()
    activateRequested = Signal(str)
    rollbackRequested = Signal()
    deactivateRequested = Signal()
    deleteVersionRequested = Signal(str)
    exportRequested = Signal(str, object, object)  # format, quantization or None, Path
    importRequested = Signal(object)  # Path

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout, self.banner = page_layout(self, "My model")
        grid = card_grid(layout, "My model", stretch=(2, 3))
        grid.add(self._active_card())
        grid.add(self._training_card())
        grid.add(self._versions_card(), wide=True)
        grid.add(self._files_card())
        self.base_card = BaseModelCard()
        grid.add(self.base_card)
        self.active_version: str | None = None
        self.quantizations = ["q8_0", "f16"]  # the merged model's types; core's full list

    # -- building -----------------------------------------------------------------------

    def _active_card(self) -> QWidget:
        frame, box = card("Your model")
        self.version_label = QLabel("–")
        self.version_label.setObjectName("BigNumber")
        self.details = hint("")
        self.quality = QLabel()
        self.quality.setWordWrap(True)
        self.warning = QLabel()
        self.warning.setObjectName("Warning")
        self.warning.setWordWrap(True)
        self.warning.hide()
        self.warnings: dict[str, str] = {}  # what the warning line says, by cause
        box.addWidget(self.version_label)
        box.addWidget(self.details)
        box.addWidget(self.quality)
        box.addWidget(self.warning)
        self.evaluation = EvaluationView()
        box.addWidget(self.evaluation)
        box.addStretch()
        return frame

    def _training_card(self) -> QWidget:
        frame, box = card("Retrain")
        self.due = hint("")
        box.addWidget(self.due)
        row = QHBoxLayout()
        self.retrain = button("Retrain my model", primary=True,
                              tooltip="Teach your model your newest writing. It runs in the "
                                      "background; you can keep chatting.")
        self.retrain.clicked.connect(self.retrainRequested)
        self.cancel = button("Cancel", tooltip="Stop training; nothing changes")
        self.cancel.clicked.connect(self.cancelRetrainRequested)
        self.cancel.hide()
        row.addWidget(self.retrain)
        row.addWidget(self.cancel)
        row.addStretch()
        box.addLayout(row)
        self.phase = QLabel()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.eta = hint("")
        for widget in (self.phase, self.progress, self.eta):
            widget.hide()
            box.addWidget(widget)
        self.plot = LossPlot()
        box.addWidget(self.plot, 1)
        return frame

    def _versions_card(self) -> QWidget:
        frame, box = card("Versions")
        self.versions = versions_model(self)
        # The note (why a version is flagged) stretches; From, then Base, give way to it.
        self.table = FittingTable(self.versions, stretch=6, droppable=(2, 5), min_stretch=170)
        self.table.setAccessibleName("Model versions")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setMinimumHeight(120)
        self.table.setMaximumHeight(220)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        box.addWidget(self.table)
        self.no_versions = hint("No versions yet. Each retrain adds one here, active when it "
                                "beats the model before it; you can go back to any of them.")
        box.addWidget(self.no_versions)
        row = QHBoxLayout()
        self.activate = button("Activate", tooltip="Chat with the selected version")
        self.activate.clicked.connect(lambda: self.activateRequested.emit(self.selected()))
        self.rollback = button("Roll back", tooltip="Go back to the version active before")
        self.rollback.clicked.connect(self.rollbackRequested)
        self.deactivate = button("Use the base model only",
                                 tooltip="Keep the versions but chat without any of them")
        self.deactivate.clicked.connect(self.deactivateRequested)
        self.delete = button("Delete", danger=True)
        self.delete.clicked.connect(self._delete)
        for widget in (self.activate, self.rollback, self.deactivate):
            row.addWidget(widget)
        row.addStretch()
        row.addWidget(self.delete)
        box.addLayout(row)
        self._selection_changed()
        return frame

    def _files_card(self) -> QWidget:
        frame, box = card("Your adapter file")
        box.addWidget(hint("Your model is yours: export it to use with llama.cpp or Ollama, "
                           "or to move it to another computer."))
        row = QHBoxLayout()
        self.export = button("Export my adapter…")
        self.export.clicked.connect(self._export)
        self.import_ = button("Import adapter…")
        self.import_.clicked.connect(self._import)
        row.addWidget(self.export)
        row.addWidget(self.import_)
        row.addStretch()
        box.addLayout(row)
        self.file_progress = QProgressBar()
        self.file_progress.hide()
        box.addWidget(self.file_progress)
        box.addStretch()
        return frame

    # -- what the controller calls ------------------------------------------------------

    def show_active(self, active, words_since: int | None, evaluation=None,
                    has_versions: bool = False, unmeasurable: str | None = None) -> None:
        """`active`: core's AdapterVersion or None; `evaluation`: its stored Evaluation;
        `unmeasurable`: why it cannot be evaluated now (None: it can)."""
        self.active_version = active.version if active else None
        self.export.setEnabled(active is not None)
        if active is None:
            self.version_label.setText("No version active" if has_versions else "Not trained yet")
            self.details.setText("Chat uses the base model alone. " + (
                "Activate a version below to use one." if has_versions
                else "Retrain to make it yours."))
            self.quality.clear()
            self._show_warnings({})
            self.evaluation.setVisible(self.evaluation.running)  # Stop stays reachable
            return
        self.version_label.setText(active.version)
        imported = active.origin == "imported"
        words = (f"{', which says it was trained' if imported else ''} on "
                 f"{active.words_trained:,} words" if active.words_trained else "")
        self.details.setText(f"{'imported' if imported else 'trained'} "
                             f"{local_time(active.created_at)}{words}")
        mine, base = active.perplexity("new"), active.perplexity("base")
        if mine is not None and base is not None:
            change = (base - mine) / base * 100
            better = f"{abs(change):.0f}% {'better' if change > 0 else 'worse'}"
            compared = f"perplexity {number(mine)} against {number(base)} (lower is better)"
            if evaluation is not None:  # measured here since: the headline is that, below
                said = "Its file says" if imported else "When it was trained"
                text = f"{said}: held-out {compared}, {better}."
            elif imported:
                text = (f"Its file says it was <b>{better}</b> than the base model at predicting "
                        f"held-out writing when it was trained ({compared}). That was measured "
                        "where it was made; measure it below to see how it does on your writing.")
            else:
                text = (f"<b>{better}</b> than the base model at predicting writing of yours it "
                        f"never trained on: {compared}, both given passages of your writing, "
                        "measured when it was trained.")
            self.quality.setText(text)
        else:
            self.quality.setText("No held-out measurement for this version.")
        self._show_warnings({"deleted": "⚠ Trained on writing you have since deleted: retrain "
                                        "to forget it."} if active.trained_on_deleted else {})
        self.evaluation.show()
        self.evaluation.show_evaluation(evaluation, unmeasurable)

    def show_other_base(self, version: str, base_name: str) -> None:
        """The active `version` was trained on another base model than the profile's."""
        if version == self.active_version:
            self._show_warnings(self.warnings | {"base": (
                f"⚠ Trained on another base model ({base_name}): chat replies without it. "
                f"Retrain to make a version for this base, or choose {base_name} again.")})

    def _show_warnings(self, warnings: dict[str, str]) -> None:
        self.warnings = warnings
        self.warning.setText("<br>".join(warnings.values()))
        self.warning.setVisible(bool(warnings))

    def show_versions(self, versions: list) -> None:
        selected = self.selected()
        self.versions.set_items(versions)
        row = self.versions.row_of(lambda v: v.version == selected)
        if row >= 0:
            self.table.selectRow(row)
        self.rollback.setEnabled(self.active_version is not None and any(
            v.activated_at is not None and not v.is_active for v in versions))  # as rollback()
        self.deactivate.setEnabled(self.active_version is not None)
        self.no_versions.setVisible(not versions)
        self._selection_changed()

    def show_due(self, text: str) -> None:
        self.due.setText(text)

    def training_started(self, caption: str = PHASES["starting"]) -> None:
        self.retrain.setEnabled(False)
        self.base_card.set_training(True)
        self.cancel.setEnabled(True)
        self.cancel.show()
        self.plot.clear()
        self.phase.setText(caption + "…")
        self.progress.setRange(0, 0)
        self.eta.setText("")
        self.due.hide()  # whether a retrain is due is moot while one runs
        for widget in (self.phase, self.progress, self.eta):
            widget.show()

    def training_progress(self, progress, percent: int) -> None:
        caption = PHASES.get(progress.phase, progress.phase.capitalize())
        detail = f": {progress.message}" if progress.message else ""
        steps = (f" (step {progress.done} of {progress.total})"
                 if progress.phase == "train" and progress.total else "")
        self.phase.setText(f"{caption}{detail}{steps}")
        self.progress.setRange(0, 100)
        self.progress.setValue(percent)
        parts = []
        if progress.eta_s is not None:
            parts.append(f"about {duration(progress.eta_s)} left")
        if progress.tokens_per_s:
            parts.append(f"{progress.tokens_per_s:,.0f} tokens/s")
        if progress.loss is not None:
            parts.append(f"loss {progress.loss:.3f}")
            if progress.phase == "train":
                self.plot.add_point(progress.done, progress.loss)
        self.eta.setText(" · ".join(parts))

    def show_last_run(self, curve) -> None:
        """The loss of the newest run that trained (a `training.LossCurve`, or None)."""
        if curve is None:
            self.plot.clear()
            return
        ended = {"succeeded": f"trained {curve.version}", "cancelled": "stopped"}.get(
            curve.status, curve.status)
        self.plot.show_points(curve.points, f"Run {curve.run_id} · {ended} · "
                                            f"{local_time(curve.finished_at)}")

    def training_stopping(self) -> None:
        self.cancel.setEnabled(False)
        self.phase.setText("Stopping…")

    def training_finished(self) -> None:
        self.retrain.setEnabled(True)
        self.base_card.set_training(False)
        self.cancel.hide()
        self.progress.hide()
        self.eta.hide()
        self.phase.hide()
        self.due.show()

    def file_job_started(self, text: str) -> None:
        self.export.setEnabled(False)
        self.import_.setEnabled(False)
        self.file_progress.setRange(0, 0)
        self.file_progress.setFormat(text)
        self.file_progress.show()

    def file_job_progress(self, progress) -> None:
        show_progress(self.file_progress, progress, progress.message or progress.phase)

    def file_job_finished(self) -> None:
        self.export.setEnabled(self.active_version is not None)
        self.import_.setEnabled(True)
        self.file_progress.hide()

    def selected(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.versions.item(rows[0].row()).version if rows else None

    # -- user actions -------------------------------------------------------------------

    def _selection_changed(self, *_args) -> None:
        version = self.selected()
        self.activate.setEnabled(version is not None and version != self.active_version)
        self.delete.setEnabled(version is not None and version != self.active_version)

    def _delete(self) -> None:
        version = self.selected()
        if version is None:
            self.banner.show_message("Select a version to delete.", "info", 4)
        elif widgets.ask(self, "Delete version",
                                   f"Delete {version} and its files?", "Delete"):
            self.deleteVersionRequested.emit(version)

    def _export(self) -> None:
        if self.active_version is None:
            return
        choice = ask_export(self.active_version, self.quantizations, self)
        if choice is not None:
            self.exportRequested.emit(*choice)

    def _import(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, "Import an adapter", str(Path.home()),
            "OPPU adapters (*.zip *.gguf);;All files (*)")
        if path:
            self.importRequested.emit(Path(path))
