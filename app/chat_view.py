"""The chat transcript: message bubbles rendering markdown, with sources under each reply."""

import re

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from oppu.app.markdown import markdown_html
from oppu.app.widgets import HINT_COLOR, VerticalScroll

# Re-render streaming markdown at most this often. Every render lays out and repaints the
# reply on cores that llama.cpp's threads are decoding on: in the app, on 2 cores, 40 ms
# decoded 54.5 tokens/s and 100 ms 57.6 (63 without a window).
RENDER_EVERY_MS = 100
ROLE_NAMES = {"user": "You", "assistant": "Your model"}
# Until a reply is finished, which model writes it is not known (the personal model may be
# off, not trained yet, or refused for another base).
WRITING_NAME = "OPPU"
# A word-wrapping QLabel never breaks inside a word: one long URL or path would widen the
# whole transcript. Runs of this many characters get a zero-width space after them.
LONG_RUN = 30
_UNIT = re.compile(r"&#?\w+;|.", re.DOTALL)  # an HTML entity counts as one character
_TAG = re.compile(r"(<[^>]*>)")


def breakable(text: str) -> str:
    """`text`, plain or HTML, with a line-break opportunity in every long unbroken run (in
    the text, never inside a tag or an entity). For display only: Copy takes the text."""
    parts = _TAG.split(text)
    return "".join(part if i % 2 else _broken_runs(part) for i, part in enumerate(parts))


def _broken_runs(text: str) -> str:
    pieces, run = [], 0
    for unit in _UNIT.findall(text):
        if unit.isspace():
            run = 0
        elif run == LONG_RUN:
            pieces.append("\u200b")
            run = 1
        else:
            run += 1
        pieces.append(unit)
    return "".join(pieces)


class SourcesPanel(QWidget):
    """A collapsed "Sources from your writing (N)" line that opens to show the passages."""

    def __init__(self, passages, parent: QWidget | None = None):
        super().__init__(parent)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 4, 0, 0)
        box.setSpacing(4)
        self.toggle = QToolButton()
        self.toggle.setObjectName("SourcesToggle")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setText(f"Sources from your writing ({len(passages)})")
        self.toggle.toggled.connect(self.set_open)
        box.addWidget(self.toggle)
        self.entries = []
        for passage in passages:
            text = " ".join(passage.text.split())
            similarity = ("" if passage.score is None else
                          f" <span style='color:{HINT_COLOR}'>· similarity {passage.score:.2f}</span>")
            entry = QLabel(breakable(
                f"<b>{_escape(passage.title or 'Untitled')}</b>{similarity}"
                f"<br>{_escape(text[:400])}{'…' if len(text) > 400 else ''}"))
            entry.setObjectName("Source")
            entry.setWordWrap(True)
            entry.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            entry.hide()
            box.addWidget(entry)
            self.entries.append(entry)

    def set_open(self, on: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        for entry in self.entries:
            entry.setVisible(on)


class Bubble(QFrame):
    """One message. An assistant bubble can stream: `append` text, then `finish`."""

    regenerateRequested = Signal()

    def __init__(self, role: str, text: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Bubble")
        self.setProperty("role", role)
        self.role = role
        self.text = text
        self.sources: SourcesPanel | None = None
        box = QVBoxLayout(self)
        box.setContentsMargins(14, 8, 14, 8)
        box.setSpacing(4)
        self.header = QLabel(WRITING_NAME if role == "assistant" else ROLE_NAMES.get(role, role))
        self.header.setObjectName("BubbleRole")
        box.addWidget(self.header)
        self.body = QLabel()
        # The user's own words are shown as typed; only replies are rendered as Markdown.
        self.body.setTextFormat(Qt.TextFormat.PlainText if role == "user"
                                else Qt.TextFormat.RichText)
        self.body.setWordWrap(True)
        self.body.setOpenExternalLinks(False)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                          | Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.body.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        box.addWidget(self.body)
        self.notice = QLabel()
        self.notice.setProperty("hint", True)
        self.notice.setWordWrap(True)
        self.notice.hide()
        box.addWidget(self.notice)
        self.actions = QHBoxLayout()
        self.actions.setContentsMargins(0, 0, 0, 0)
        self.actions.addStretch()
        self.copy = self._action("Copy", "Copy this message", self._copy)
        self.regenerate = self._action("Regenerate", "Write this reply again",
                                       self.regenerateRequested.emit)
        self.regenerate.hide()
        box.addLayout(self.actions)
        self._render_timer = QTimer(self, singleShot=True, interval=RENDER_EVERY_MS)
        self._render_timer.timeout.connect(self._render)
        self._render()

    def _action(self, text: str, tooltip: str, slot) -> QToolButton:
        widget = QToolButton()
        widget.setObjectName("BubbleAction")
        widget.setText(text)
        widget.setToolTip(tooltip)
        widget.clicked.connect(slot)
        self.actions.addWidget(widget)
        return widget

    def append(self, piece: str) -> None:
        self.text += piece
        if not self._render_timer.isActive():
            self._render_timer.start()

    def set_waiting(self, text: str) -> None:
        self.body.setText(markdown_html(f"*{text}*"))
        self.copy.hide()

    def finish(self, text: str, sources=(), adapter_version: str | None = None,
               notices=(), stopped: bool = False, adapter_scale: float | None = None) -> None:
        self.text = text
        self._render_timer.stop()
        self._render()
        strength = (f" at strength {adapter_scale:.2f}"
                    if adapter_scale is not None and adapter_scale != 1 else "")
        who = (f"{ROLE_NAMES['assistant']} · with {adapter_version}{strength}" if adapter_version
               else "Base model · without your personal model")
        self.header.setText(who + (" · stopped" if stopped else ""))
        if stopped and not text:
            self.body.setText(markdown_html("*Stopped before it began to reply.*"))
        self.set_notices(notices)
        self.set_sources(sources)

    def set_notices(self, notices) -> None:
        self.notice.setText(breakable("\n".join(notices)))
        self.notice.setVisible(bool(notices))

    def set_sources(self, sources) -> None:
        if self.sources is not None:
            self.sources.deleteLater()
            self.sources = None
        if sources:
            self.sources = SourcesPanel(sources)
            self.layout().insertWidget(self.layout().count() - 1, self.sources)

    def _render(self) -> None:
        if self.role == "user":
            self.body.setText(breakable(self.text))
            return
        self.body.setText(breakable(markdown_html(self.text or " ")))
        self.copy.setVisible(bool(self.text))

    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text)


class Transcript(VerticalScroll):
    """The messages of one conversation, newest at the bottom; a long one shows its latest
    messages, with a button above them for the earlier ones."""

    earlierRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("TranscriptBody", parent)
        self.setObjectName("Transcript")
        self.column = QVBoxLayout(self.body)
        self.column.setContentsMargins(16, 12, 16, 12)
        self.column.setSpacing(10)
        self.empty = QLabel()
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setProperty("hint", True)
        self.empty.setWordWrap(True)
        self.empty.setContentsMargins(40, 80, 40, 0)
        self.earlier = QToolButton()
        self.earlier.setObjectName("Earlier")
        self.earlier.clicked.connect(self.earlierRequested)
        self.earlier.hide()
        self.column.addWidget(self.earlier, 0, Qt.AlignmentFlag.AlignHCenter)
        self.column.addWidget(self.empty)
        self.column.addStretch()
        self.bubbles: list[Bubble] = []
        self.rows: list[QWidget] = []
        self.verticalScrollBar().rangeChanged.connect(self._follow)
        self._at_bottom = True
        self._anchor: QWidget | None = None  # a row kept at the top until the user scrolls
        self.verticalScrollBar().valueChanged.connect(self._track)
        self.verticalScrollBar().actionTriggered.connect(self._let_go)

    def set_empty_text(self, text: str) -> None:
        self.empty.setText(text)
        self.empty.setVisible(not self.bubbles)

    def clear(self) -> None:
        for row in self.rows:
            row.deleteLater()
        self.rows, self.bubbles = [], []
        self._at_bottom, self._anchor = True, None  # the next conversation opens at its end
        self.empty.show()
        self.earlier.hide()

    def show_earlier_button(self, hidden: int) -> None:
        """Offer the `hidden` messages before those shown (none: no button)."""
        self.earlier.setText(f"Show earlier messages ({hidden:,} more)")
        self.earlier.setVisible(hidden > 0)

    def add(self, role: str, text: str = "", at: int | None = None) -> Bubble:
        """A new message at the end or, with `at`, put in before the `at`th one shown."""
        self.empty.hide()
        bubble = Bubble(role, text)
        row = QWidget()
        line = QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        if role == "user":
            line.addStretch(1)
            line.addWidget(bubble, 4)
        else:
            line.addWidget(bubble, 5)
            line.addStretch(1)
        if at is not None:
            self.column.insertWidget(self.column.indexOf(self.empty) + 1 + at, row)
            self.bubbles.insert(at, bubble)
            self.rows.insert(at, row)
            return bubble
        self.column.insertWidget(self.column.count() - 1, row)
        if self.bubbles and self.bubbles[-1].role == "assistant":
            self.bubbles[-1].regenerate.hide()
        self.bubbles.append(bubble)
        self.rows.append(row)
        self._at_bottom, self._anchor = True, None
        return bubble

    def scroll_to(self, index: int) -> None:
        """Show the `index`th message at the top (where the reader was, after earlier
        messages were put above it), instead of following the newest."""
        self._at_bottom = False
        self._anchor = self.rows[index]  # its place is known once the rows are laid out
        self._follow(0, self.verticalScrollBar().maximum())

    def _let_go(self, _action: int) -> None:
        self._anchor = None

    def remove(self, index: int = -1) -> None:
        self.bubbles.pop(index)
        self.rows.pop(index).deleteLater()
        if not self.bubbles:
            self.empty.show()

    def _track(self, value: int) -> None:
        self._at_bottom = value >= self.verticalScrollBar().maximum() - 24

    def _follow(self, _minimum: int, maximum: int) -> None:
        if self._anchor is not None:
            self.verticalScrollBar().setValue(self._anchor.y())
        elif self._at_bottom:
            self.verticalScrollBar().setValue(maximum)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
