"""Settings: one editor per core setting, grouped; each change is handed to core to validate."""

from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from oppu.app import widgets
from oppu.app.widgets import button, card, card_grid, hint, page_layout
from oppu.core.settings import Settings

GROUPS = [
    ("Retrain schedule", ["auto_retrain", "retrain_min_words", "retrain_min_hours",
                          "retrain_only_idle"]),
    ("Training", ["training_preset", "training_device"]),
    ("Chat", ["temperature", "top_p", "max_reply_tokens", "context_tokens", "retrieval_k",
              "retrieval_min_score"]),
    ("Import", ["max_file_mb", "mail_addresses"]),
]
LABELS = {
    "auto_retrain": "Retrain automatically", "retrain_min_words": "Minimum new words",
    "retrain_min_hours": "Minimum hours between runs", "retrain_only_idle": "Only when idle",
    "training_preset": "Preset", "training_device": "Device",
    "temperature": "Creativity (temperature)", "top_p": "Word variety (top p)",
    "max_reply_tokens": "Longest reply", "context_tokens": "Chat memory (context)",
    "retrieval_k": "Passages quoted per reply", "retrieval_min_score": "Least relevance quoted",
    "max_file_mb": "Largest file", "mail_addresses": "Your email addresses",
}
# (step, decimals, suffix) of number fields; their ranges are core's (`Settings.limits`)
NUMBER_FORMATS = {
    "retrain_min_words": (500, 0, " words"), "retrain_min_hours": (1.0, 1, " h"),
    "temperature": (0.05, 2, ""), "top_p": (0.05, 2, ""),
    "max_reply_tokens": (64, 0, " tokens"), "retrieval_k": (1, 0, ""),
    "context_tokens": (512, 0, " tokens"), "retrieval_min_score": (0.05, 2, ""),
    "max_file_mb": (1.0, 1, " MB"),
}


class SettingsPage(QWidget):
    settingChanged = Signal(str, object)
    openFolderRequested = Signal()
    renameRequested = Signal(str)  # the profile's new name
    deleteAllRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout, self.banner = page_layout(self, "Settings")
        grid = card_grid(layout, "Settings")
        self.editors: dict[str, QWidget] = {}
        for title, keys in GROUPS:
            frame, box = card(title)
            form = QFormLayout()
            for key in keys:
                form.addRow(LABELS[key], self._editor(key))
            box.addLayout(form)
            if title == "Training":
                self.devices = hint("Checking which device will be used…")
                box.addWidget(self.devices)
            box.addStretch()
            grid.add(frame)
        grid.add(self._data_card(), wide=True)

    def _editor(self, key: str) -> QWidget:
        if Settings.choices(key):
            editor = QComboBox()
            editor.addItems(Settings.choices(key))
            editor.activated.connect(lambda _i, k=key, e=editor: self._changed(k, e.currentText()))
        elif key in NUMBER_FORMATS:
            step, decimals, suffix = NUMBER_FORMATS[key]
            editor = QDoubleSpinBox() if decimals else QSpinBox()
            if decimals:
                editor.setDecimals(decimals)
            editor.setRange(*Settings.limits(key))
            editor.setSingleStep(step)
            editor.setSuffix(suffix)
            editor.setKeyboardTracking(False)
            editor.valueChanged.connect(lambda value, k=key: self._changed(k, value))
        elif key in ("auto_retrain", "retrain_only_idle"):
            editor = QCheckBox()
            editor.toggled.connect(lambda on, k=key: self._changed(k, on))
        else:
            editor = QLineEdit(placeholderText="you@example.com, you@work.example")
            editor.editingFinished.connect(lambda k=key, e=editor: self._changed(k, e.text()))
        editor.setObjectName(key)
        self.editors[key] = editor
        return editor

    def _data_card(self) -> QWidget:
        frame, box = card("Your data")
        box.addWidget(hint("Everything OPPU knows about you is in this folder, on this computer."))
        self.folder = QLabel()  # a line of its own, wrapped: a long path widens nothing
        self.folder.setWordWrap(True)
        self.profile_name = ""
        self.folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.folder)
        row = QHBoxLayout()
        open_folder = button("Open folder")
        open_folder.clicked.connect(self.openFolderRequested)
        self.rename = button("Rename profile…")
        self.rename.clicked.connect(self._ask_new_name)
        row.addWidget(self.rename)
        row.addWidget(open_folder)
        row.addStretch()
        box.addLayout(row)
        danger = QHBoxLayout()
        danger.addWidget(hint("Deleting removes this profile's writing, chats, models and "
                              "settings for good."), 1)
        self.delete_all = button("Delete all my data…", danger=True)
        self.delete_all.clicked.connect(self._confirm_delete_all)
        danger.addWidget(self.delete_all)
        box.addLayout(danger)
        return frame

    # -- what the controller calls ------------------------------------------------------

    def set_help(self, help_texts: dict[str, str]) -> None:
        """Core's help text of each setting, as the tooltip of its editor."""
        for key, editor in self.editors.items():
            text = help_texts.get(key, "")
            editor.setToolTip(text[:1].upper() + text[1:])

    def show_settings(self, settings, refused: str | None = None) -> None:
        """Show `settings` in the editors without echoing changes back; typed text the store
        `refused` (an address mistyped) stays to be corrected."""
        for key, editor in self.editors.items():
            if key == refused and isinstance(editor, QLineEdit):
                continue
            value = getattr(settings, key)
            editor.blockSignals(True)
            if isinstance(editor, QComboBox):
                editor.setCurrentText(str(value))
            elif isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QLineEdit):
                editor.setText(", ".join(value))
            else:
                editor.setValue(value)
            editor.blockSignals(False)
        self.set_schedule_enabled(settings.auto_retrain)

    def set_schedule_enabled(self, on: bool) -> None:
        for key in ("retrain_min_words", "retrain_min_hours", "retrain_only_idle"):
            self.editors[key].setEnabled(on)

    def show_folder(self, folder: Path) -> None:
        """The profile's folder, which bears its name."""
        self.folder.setText(str(folder))
        self.profile_name = folder.name

    def show_devices(self, text: str) -> None:
        self.devices.setText(text)

    @staticmethod
    def open_folder(folder: Path) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # -- user actions -------------------------------------------------------------------

    def _changed(self, key: str, value) -> None:
        if key == "auto_retrain":
            self.set_schedule_enabled(value)
        self.settingChanged.emit(key, value)

    def _ask_new_name(self) -> None:
        name, ok = QInputDialog.getText(self, "Rename profile", "New name of this profile:",
                                        text=self.profile_name)
        if ok and name.strip() and name.strip() != self.profile_name:
            self.renameRequested.emit(name.strip())

    def _confirm_delete_all(self) -> None:
        if widgets.ask(self, "Delete all my data",
                       "Delete everything in this profile: your writing, conversations, trained "
                       "models and settings? This cannot be undone.", "Delete everything"):
            self.deleteAllRequested.emit()
