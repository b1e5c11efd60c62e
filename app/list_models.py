"""Qt item models that hold snapshots of core's plain objects; core stays the truth.

Each model is refreshed by handing it a new list; views never reach into the store.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from oppu.core.times import local_time

ItemRole = Qt.ItemDataRole.UserRole + 1
Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column:
    header: str
    text: Callable[[Any], str]
    tooltip: Callable[[Any], str] | None = None
    align_right: bool = False


class SnapshotModel(QAbstractTableModel):
    """A read-only table over a list of items, replaced whole by `set_items`."""

    def __init__(self, columns: Sequence[Column], parent=None):
        super().__init__(parent)
        self.columns = list(columns)
        self.items: list[Any] = []

    def set_items(self, items: Sequence[Any]) -> None:
        self.beginResetModel()
        self.items = list(items)
        self.endResetModel()

    def item(self, row: int) -> Any:
        return self.items[row]

    def row_of(self, predicate: Callable[[Any], bool]) -> int:
        return next((row for row, item in enumerate(self.items) if predicate(item)), -1)

    def rowCount(self, parent: Index | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.items)

    def columnCount(self, parent: Index | None = None) -> int:
        return 0 if parent is not None and parent.isValid() else len(self.columns)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.items):
            return None
        item = self.items[index.row()]
        column = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(item)
        if role == Qt.ItemDataRole.ToolTipRole and column.tooltip:
            return column.tooltip(item)
        if role == Qt.ItemDataRole.TextAlignmentRole and column.align_right:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == ItemRole:
            return item
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if (role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal
                and 0 <= section < len(self.columns)):
            return self.columns[section].header
        return None


def documents_model(parent=None) -> SnapshotModel:
    """Rows of `DocumentSummary`: the user's stored writing."""
    return SnapshotModel([
        Column("Title", lambda d: d.title or "(untitled)", lambda d: d.preview),
        Column("Source", lambda d: d.source),
        Column("Date", lambda d: local_time(d.created_at)),
        Column("Words", lambda d: f"{d.words:,}", align_right=True),
    ], parent)


def number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def versions_model(parent=None) -> SnapshotModel:
    """Rows of core's `AdapterVersion`, newest first."""
    return SnapshotModel([
        Column("Version", lambda v: v.version + ("  ● active" if v.is_active else "")),
        Column("Created", lambda v: local_time(v.created_at)),
        Column("From", lambda v: v.origin),
        Column("Words", lambda v: f"{v.words_trained:,}" if v.words_trained else "–",
               lambda _v: "words of your writing this version was trained on; the documents "
                          "held out to measure it are not counted",
               align_right=True),
        Column("Perplexity", lambda v: number(v.perplexity("new")),
               lambda _v: "held-out perplexity of this version, given passages of your "
                          "writing as in training: lower is better",
               align_right=True),
        Column("Base perplexity", lambda v: number(v.perplexity("base")),
               lambda _v: "the base model's perplexity on the same held-out writing, given "
                          "the same passages (Measure on my writing shows it without them too)",
               align_right=True),
        Column("Note", lambda v: "trained on deleted writing" if v.trained_on_deleted else "",
               lambda v: "retrain to forget what you deleted" if v.trained_on_deleted else ""),
    ], parent)


def conversations_model(parent=None) -> SnapshotModel:
    """Rows of core's `ConversationSummary`, most recent first."""
    return SnapshotModel([Column(
        "Conversation", lambda c: c.title,
        lambda c: f"{c.title}\n{c.messages} messages · last active {local_time(c.updated_at)}")],
        parent)
