"""The base model selector: the bundled model, a GGUF file the user has, or a download."""

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QFrame, QHBoxLayout, QProgressBar

from oppu.app import widgets
from oppu.app.widgets import button, card_layout, hint, show_progress

LOCAL_FILE = "\0local"


class BaseModelCard(QFrame):
    baseModelRequested = Signal(str)  # the `base_model` setting
    downloadRequested = Signal(str)  # a curated model's key
    cancelDownloadRequested = Signal()

    def __init__(self):
        super().__init__()
        box = card_layout(self, "Base model")
        self._current = ""
        self._entries = {}  # a curated model's key: its `CuratedEntry`
        box.addWidget(hint("Your personal adapter plugs into this shared model. Changing it "
                           "means your next retrain starts fresh on the new one."))
        row = QHBoxLayout()
        self.choices = QComboBox()
        self.choices.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.choices.setMinimumContentsLength(16)
        self.choices.activated.connect(self._chosen)
        row.addWidget(self.choices, 1)
        box.addLayout(row)

        download_row = QHBoxLayout()
        self.downloads = QComboBox()
        self.downloads.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.downloads.setMinimumContentsLength(16)
        self.downloads.setToolTip("Small instruct models from the Hugging Face hub; the only "
                                  "time OPPU uses the network")
        self.download = button("Download…")
        self.download.clicked.connect(self._download)
        self.cancel_download = button("Stop")
        self.cancel_download.clicked.connect(self.cancelDownloadRequested)
        self.cancel_download.hide()
        download_row.addWidget(self.downloads, 1)
        download_row.addWidget(self.download)
        download_row.addWidget(self.cancel_download)
        box.addLayout(download_row)
        self.progress = QProgressBar()
        self.progress.hide()
        box.addWidget(self.progress)

    # -- what the controller calls ------------------------------------------------------

    def set_choices(self, choices: list, current: str) -> None:
        """`choices`: core's `BaseChoice`s; `current`: the profile's `base_model` setting."""
        self.choices.blockSignals(True)
        self.choices.clear()
        for choice in choices:
            self.choices.addItem(choice.name, choice.setting)
            self.choices.setItemData(self.choices.count() - 1, str(choice.path),
                                     Qt.ItemDataRole.ToolTipRole)
        if current not in [c.setting for c in choices]:
            self.choices.addItem(Path(current).name, current)
        self.choices.addItem("Choose a GGUF file…", LOCAL_FILE)
        self.choices.setCurrentIndex(max(self.choices.findData(current), 0))
        self.choices.blockSignals(False)
        self._current = current

    def set_training(self, training: bool) -> None:
        """A run trains for the base it started on: the choice waits until it ends."""
        self.choices.setEnabled(not training)
        self.choices.setToolTip("The base model can change once the retrain ends."
                                if training else "")

    def set_downloads(self, entries: list) -> None:
        """`entries`: core's `CuratedEntry`s (a model, and its path once downloaded)."""
        self.downloads.clear()
        self._entries = {entry.model.key: entry for entry in entries}
        for entry in entries:
            done = " — downloaded" if entry.path else f" — {entry.model.size_mb:,} MB"
            self.downloads.addItem(entry.model.description.split(":")[0] + done, entry.model.key)
            self.downloads.setItemData(self.downloads.count() - 1, entry.model.description,
                                       Qt.ItemDataRole.ToolTipRole)

    def download_started(self) -> None:
        self.download.hide()
        self.cancel_download.show()
        self.progress.setRange(0, 0)
        self.progress.show()

    def download_progress(self, progress) -> None:
        mb = progress.done / 2**20
        show_progress(self.progress, progress,
                      f"{progress.message or progress.phase} {mb:,.0f} MB")

    def download_finished(self) -> None:
        self.download.show()
        self.cancel_download.hide()
        self.progress.hide()

    # -- user actions -------------------------------------------------------------------

    def _download(self) -> None:
        """The one network use: said so, and asked, before it starts."""
        entry = self._entries.get(self.downloads.currentData())
        if entry is None:
            return
        if entry.path is not None or widgets.ask(
                self, "Download a base model",
                f"This connects to the internet to download "
                f"{entry.model.description.split(':')[0]} ({entry.model.size_mb:,} MB) from "
                "the Hugging Face hub. Nothing of yours is sent: your writing, chats and model "
                "stay on this computer.", "Download"):
            self.downloadRequested.emit(entry.model.key)

    def _chosen(self, index: int) -> None:
        setting = self.choices.itemData(index)
        if setting == LOCAL_FILE:
            path, _filter = QFileDialog.getOpenFileName(
                self, "Choose a base model", str(Path.home()), "GGUF models (*.gguf)")
            self.choices.setCurrentIndex(max(self.choices.findData(self._current), 0))
            if path:
                self.baseModelRequested.emit(path)
        elif setting != self._current:
            self.baseModelRequested.emit(setting)
