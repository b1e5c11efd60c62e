"""The "How personal is it?" part of My model: the stored four-way evaluation and its button."""

import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from oppu.app.list_models import number
from oppu.app.messages import sentence
from oppu.app.widgets import button, show_progress

MEASURE_TIP = ("Compare your model with the base model on writing it held out from training "
               "(a few minutes)")
ROWS = [("base", "Base model"), ("base+retrieval", "Base + your writing as context"),
        ("adapter", "Your model"), ("adapter+retrieval", "Your model + your writing")]
SMALL_SAMPLE_TOKENS = 2000  # below this, a few percent between the rows can be chance
PHASES = {"prepare": "Preparing the base model",
          "perplexity": "Scoring your held-out writing",
          "generate": "Writing sample continuations"}


def evaluation_table(evaluation) -> str:
    """Rich text: perplexity of each configuration and its cut against the base model."""
    base = evaluation.perplexity["base"]
    rows = "".join(
        f"<tr><td>{label}</td><td align='right'>&nbsp;{number(evaluation.perplexity[key])}</td>"
        f"<td align='right'>&nbsp;{_cut(evaluation.perplexity[key], base)}</td></tr>"
        for key, label in ROWS)
    small = (" So few tokens make a small sample: a few percent between the rows can be "
             "chance. Measuring again after a retrain on more writing tells more."
             if evaluation.heldout_tokens < SMALL_SAMPLE_TOKENS else "")
    note = f" {sentence(evaluation.retrieval_note)}." if evaluation.retrieval_note else ""
    return (f"Your model with your writing, as chat uses them: "
            f"<b>{evaluation.reduction_vs_base * 100:.0f}%</b> lower perplexity than the base "
            f"model on {evaluation.heldout_tokens:,} tokens of your writing it never trained on "
            f"(lower is better):<table>{rows}</table>{note}{small}")


def _cut(value: float, base: float) -> str:
    if value == base:
        return ""
    change = (base - value) / base * 100
    return f"{abs(change):.0f}% {'lower' if change > 0 else 'higher'}"


class EvaluationView(QWidget):
    evaluateRequested = Signal()
    stopRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        row = QHBoxLayout()
        self.measure = button("Measure on my writing", tooltip=MEASURE_TIP)
        self.measure.clicked.connect(self.evaluateRequested)
        self.stop = button("Stop")
        self.stop.clicked.connect(self.stopRequested)
        self.stop.hide()
        row.addWidget(self.measure)
        row.addWidget(self.stop)
        row.addStretch()
        self.progress = QProgressBar()
        self.progress.hide()
        box.addWidget(self.summary)
        box.addLayout(row)
        box.addWidget(self.progress)

    def show_evaluation(self, evaluation, unavailable: str | None) -> None:
        """`evaluation`: core's stored Evaluation of the active version, or None;
        `unavailable`: why it cannot be measured now, or None if it can. Visibility is left
        alone: a refresh during a measurement must not bring the button back."""
        self.measure.setEnabled(unavailable is None)
        self.measure.setToolTip(MEASURE_TIP if unavailable is None else unavailable)
        self.measure.setText("Measure again" if evaluation else "Measure on my writing")
        text = evaluation_table(evaluation) if evaluation is not None else \
            ("Measure compares four ways of answering (the base model, the base model with "
             "your writing as context, your model, and your model with your writing) on the "
             "writing this version held out, and writes sample continuations with each.")
        if unavailable is not None:
            text += f"<br>Cannot measure now: {html.escape(unavailable)}."
        self.summary.setText(text)

    @property
    def running(self) -> bool:
        return not self.stop.isHidden()

    def started(self) -> None:
        self.measure.hide()
        self.stop.show()
        self.progress.setRange(0, 0)
        self.progress.setFormat("Measuring…")
        self.progress.show()

    def report(self, progress) -> None:
        what = dict(ROWS).get(progress.message, progress.message)
        caption = PHASES.get(progress.phase, progress.phase.capitalize())
        show_progress(self.progress, progress, caption if what.lower() in caption.lower()
                      else f"{caption}: {what}")  # not "Preparing the base model: base model"

    def finished(self) -> None:
        self.stop.hide()
        self.measure.show()
        self.progress.hide()
