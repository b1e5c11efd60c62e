"""Export my adapter…: choose the format (and the merged model's quantization), then a file."""

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

# (format, caption, file suffix, explanation)
FORMATS = [
    ("zip", "Adapter bundle (.zip)", ".zip",
     ("Everything to carry your model to another computer: your adapter in both the "
      "training format and llama.cpp's, with a README. Import it there into OPPU.")),
    ("gguf", "Adapter only (.gguf)", ".gguf",
     ("A small file for llama.cpp (llama-server --lora) or Ollama (an ADAPTER line), used "
      "together with the same base model.")),
    ("merged", "Merged model (.gguf)", ".gguf",
     "One standalone model file with your adapter baked in: no base model needed. Larger."),
]
QUANTIZATION_NOTES = {"q8_0": "near-lossless", "f16": "exact, largest",
                      "q6_k": "very little loss", "q5_k_m": "little loss",
                      "q5_k_s": "little loss, a bit smaller", "q5_0": "little loss, older type",
                      "q4_k_m": "small, slight loss", "q4_k_s": "smaller, slight loss",
                      "q4_0": "small, some loss, older type", "q3_k_m": "smallest, some loss"}


class ExportDialog(QDialog):
    def __init__(self, version: str, quantizations: list[str], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export my adapter")
        self.version = version
        box = QVBoxLayout(self)
        form = QFormLayout()
        self.format = QComboBox()
        for key, caption, _suffix, _about in FORMATS:
            self.format.addItem(caption, key)
        self.quantization = QComboBox()
        for key in quantizations:
            note = QUANTIZATION_NOTES.get(key)
            self.quantization.addItem(key.upper() + (f": {note}" if note else ""), key)
        form.addRow("Format", self.format)
        form.addRow("Quantization", self.quantization)
        box.addLayout(form)
        self.about = QLabel()
        self.about.setWordWrap(True)
        self.about.setProperty("hint", True)
        self.about.setMinimumWidth(380)
        box.addWidget(self.about)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        buttons.addButton("Choose file…", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        box.addWidget(buttons)
        self.format.currentIndexChanged.connect(self._format_changed)
        self._format_changed()

    def _format_changed(self, *_args) -> None:
        key, _caption, _suffix, about = FORMATS[self.format.currentIndex()]
        self.quantization.setEnabled(key == "merged")
        self.about.setText(about)

    def choice(self) -> tuple[str, str | None]:
        key = self.format.currentData()
        return key, self.quantization.currentData() if key == "merged" else None

    def suggested_name(self) -> str:
        key, quantization = self.choice()
        suffix = FORMATS[self.format.currentIndex()][2]
        kind = {"zip": "adapter", "gguf": "adapter", "merged": f"merged-{quantization}"}[key]
        return f"oppu-{self.version}-{kind}{suffix}"


def ask_export(version: str, quantizations: list[str], parent: QWidget
               ) -> tuple[str, str | None, Path] | None:
    """(format, quantization, path) the user chose, or None if they cancelled."""
    dialog = ExportDialog(version, quantizations, parent)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    key, quantization = dialog.choice()
    suffix = FORMATS[dialog.format.currentIndex()][2]
    saving = save_dialog(parent, Path.home() / dialog.suggested_name(), suffix,
                         dialog.format.currentText())
    if saving.exec() != QDialog.DialogCode.Accepted or not saving.selectedFiles():
        return None
    return key, quantization, Path(saving.selectedFiles()[0])


def save_dialog(parent: QWidget, suggested: Path, suffix: str, kind: str) -> QFileDialog:
    """A save dialog that adds `suffix` itself, before it asks whether to replace a file:
    typed "mine" where mine.gguf exists, it asks about mine.gguf (the export replaces what
    the dialog confirmed)."""
    saving = QFileDialog(parent, "Export my adapter", str(suggested), f"{kind} (*{suffix})")
    saving.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
    saving.setDefaultSuffix(suffix.lstrip("."))
    return saving
