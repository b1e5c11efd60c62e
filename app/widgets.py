"""Small widgets every page uses: a message banner, cards, titles and hints."""

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListView,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from oppu.app.messages import full_stop, sentence

HINT_COLOR = "#5f6577"  # as hints are in the style sheet


class Banner(QFrame):
    """A one-line message above a page: errors stay until closed, other news fades."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Banner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action = QPushButton()
        self.action.hide()
        self._action_slot = None
        self.action.clicked.connect(self._act)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action)
        layout.addWidget(close)
        self._fade = QTimer(self, singleShot=True, timeout=self.hide)
        self.hide()

    @property
    def kind(self) -> str:
        return self.property("kind") or ""

    def show_message(self, text: str, kind: str = "info", seconds: float = 8.0,
                     action: tuple[str, Callable[[], None]] | None = None) -> None:
        """Show `text`; `action` adds a button (caption, slot) that also dismisses it."""
        self._action_slot = action[1] if action else None
        self.action.setText(action[0] if action else "")
        self.action.setVisible(action is not None)
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(full_stop(sentence(text)))
        self.show()
        if kind == "error" or action:
            self._fade.stop()
        else:
            self._fade.start(int(seconds * 1000))

    def _act(self) -> None:
        slot, self._action_slot = self._action_slot, None
        self.hide()
        if slot:
            slot()


def card(title: str = "") -> tuple[QFrame, QVBoxLayout]:
    """A white rounded panel and its layout, with an optional title."""
    frame = QFrame()
    return frame, card_layout(frame, title)


def card_layout(frame: QFrame, title: str = "") -> QVBoxLayout:
    """Make `frame` a card; its layout, with the title in place."""
    frame.setObjectName("Card")
    layout = QVBoxLayout(frame)
    layout.setContentsMargins(16, 12, 16, 14)
    if title:
        heading = QLabel(title)
        heading.setObjectName("CardTitle")
        layout.addWidget(heading)
    return layout


def show_progress(bar, progress, text: str) -> None:
    """A core Progress on a QProgressBar: busy until the total is known, then done/total."""
    if progress.total:
        bar.setRange(0, progress.total)
        bar.setValue(progress.done)
    bar.setFormat(f"{text}  %p%")


def page_title(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("PageTitle")
    return label


def hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("hint", True)
    label.setWordWrap(True)
    return label


def button(text: str, primary: bool = False, danger: bool = False,
           tooltip: str = "") -> QPushButton:
    widget = QPushButton(text)
    if primary:
        widget.setProperty("primary", True)
    if danger:
        widget.setProperty("danger", True)
    if tooltip:
        widget.setToolTip(tooltip)
    return widget


def page_layout(page: QWidget, title: str) -> tuple[QVBoxLayout, Banner]:
    """The standard page frame: a title, a banner under it, then the caller's content."""
    page.setObjectName("Page")
    layout = QVBoxLayout(page)
    layout.setContentsMargins(20, 16, 20, 16)
    layout.setSpacing(10)
    layout.addWidget(page_title(title))
    banner = Banner()
    layout.addWidget(banner)
    return layout, banner


def keys_text(keys: QKeySequence) -> str:
    """A shortcut as this platform writes it: "Ctrl+N", or "⌘N" on a Mac."""
    return keys.toString(QKeySequence.SequenceFormat.NativeText)


def ask(parent: QWidget, title: str, question: str, action: str) -> bool:
    """A yes/no question whose yes-button names the action; the safe choice is the default."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, question, parent=parent)
    confirm = box.addButton(action, QMessageBox.ButtonRole.DestructiveRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.exec()
    return box.clickedButton() is confirm


class TextEditor(QPlainTextEdit):
    """A plain text field of a form: Tab moves on to the next control instead of typing a
    tab, and files dropped on it are left to the page (which imports them) instead of
    being pasted as their paths."""

    def __init__(self, placeholder: str):
        super().__init__(placeholderText=placeholder)
        self.setTabChangesFocus(True)

    def canInsertFromMimeData(self, source) -> bool:
        if any(url.isLocalFile() for url in source.urls()):
            return False
        return super().canInsertFromMimeData(source)


class ListWithPlaceholder(QListView):
    """A list that says what would be in it while it is empty."""

    def __init__(self, placeholder: str):
        super().__init__()
        self.placeholder = placeholder

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if self.model() is None or self.model().rowCount():
            return
        painter = QPainter(self.viewport())
        painter.setPen(QColor(HINT_COLOR))
        painter.drawText(self.viewport().rect().adjusted(12, 12, -12, -12),
                         Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
                         | Qt.TextFlag.TextWordWrap, self.placeholder)


def lines_high(widget: QWidget, lines: int) -> int:
    """The height that shows `lines` lines of text in a framed text field."""
    return widget.fontMetrics().lineSpacing() * lines + 2 * widget.frameWidth() + 8


class VerticalScroll(QScrollArea):
    """A frameless area whose `body`, as wide as the area, scrolls vertically only."""

    def __init__(self, body_name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.body = QWidget()
        self.body.setObjectName(body_name)
        self.setWidget(self.body)


class CardGrid(VerticalScroll):
    """Cards in two columns that scroll vertically; a wide card takes a row of its own.

    When the page is too narrow for two cards side by side, they stack in one column in
    the same order, so nothing is ever cut off at the right edge.
    """

    SPACING = 12

    def __init__(self, stretch: tuple[int, int] = (1, 1)):
        super().__init__("Page")
        self.grid = QGridLayout(self.body)
        self.grid.setContentsMargins(0, 0, 4, 0)
        self.grid.setSpacing(self.SPACING)
        self.stretch = stretch
        self.cards: list[tuple[QWidget, bool]] = []
        self.columns = 2

    def add(self, card: QWidget, wide: bool = False) -> None:
        self.cards.append((card, wide))
        self._place()

    def _positions(self, columns: int) -> list[tuple[QWidget, int, int, int]]:
        """(card, row, column, columns spanned) of each card, in reading order."""
        placed, row, col = [], 0, 0
        for card, wide in self.cards:
            if wide or columns == 1:
                row, col = row + (col > 0), 0
                placed.append((card, row, 0, columns))
                row += 1
            else:
                placed.append((card, row, col, 1))
                row, col = (row + 1, 0) if col == 1 else (row, 1)
        return placed

    def _place(self) -> None:
        for row in range(self.grid.rowCount()):
            self.grid.setRowStretch(row, 0)
        placed = self._positions(self.columns)
        for card, *_ in placed:
            self.grid.removeWidget(card)
        for card, row, col, span in placed:
            self.grid.addWidget(card, row, col, 1, span)
        self.grid.setRowStretch(max((row for _, row, _, _ in placed), default=-1) + 1, 1)
        for col in (0, 1):
            self.grid.setColumnStretch(col, self.stretch[col] if self.columns == 2 else 0)

    def _two_columns_fit(self) -> bool:
        total = sum(self.stretch)
        needed = max((card.minimumSizeHint().width() * total / self.stretch[col]
                      for card, _, col, span in self._positions(2) if span == 1), default=0)
        return self.viewport().width() >= needed + self.SPACING + 4

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        columns = 2 if self._two_columns_fit() else 1
        if columns != self.columns:
            self.columns = columns
            self._place()


def card_grid(layout: QVBoxLayout, name: str, stretch: tuple[int, int] = (1, 1)) -> CardGrid:
    """A `CardGrid` filling the rest of a page's `layout`; `name` is what a screen reader
    calls it."""
    grid = CardGrid(stretch)
    grid.setAccessibleName(name)
    layout.addWidget(grid, 1)
    return grid


def column(left: int = 0, right: int = 0) -> tuple[QWidget, QVBoxLayout]:
    """A plain widget for one side of a splitter, and its vertical layout."""
    widget = QWidget()
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(left, 0, right, 0)
    return widget, layout
