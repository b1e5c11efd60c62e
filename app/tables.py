"""A table that stays readable when narrow: one column takes the room that is left, and
columns that matter less make way for it."""

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

HEADER_PADDING = 24  # a header section's margins around its label


class FittingTable(QTableView):
    """Rows of a `SnapshotModel`, selected whole. Column `stretch` takes the width the
    others leave; while that would be under `min_stretch` pixels, the columns in
    `droppable` are hidden, first to last, and they come back as the table widens."""

    def __init__(self, model, stretch: int = 0, droppable: tuple[int, ...] = (),
                 min_stretch: int = 160, parent: QWidget | None = None):
        super().__init__(parent)
        self.setModel(model)
        self.stretch, self.droppable, self.min_stretch = stretch, droppable, min_stretch
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.verticalHeader().hide()
        self.setShowGrid(False)
        header = self.horizontalHeader()
        for column in range(model.columnCount()):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch
                                        if column == stretch else
                                        QHeaderView.ResizeMode.ResizeToContents)
        model.modelReset.connect(self.fit_columns)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit_columns()

    def needed_width(self, column: int) -> int:
        """Its widest cell or its header, shown or hidden (a hidden section's own size hint
        is 0)."""
        header = self.horizontalHeader()
        label = str(self.model().headerData(column, Qt.Orientation.Horizontal) or "")
        return max(self.sizeHintForColumn(column),
                   header.fontMetrics().horizontalAdvance(label) + HEADER_PADDING)

    def fit_columns(self) -> None:
        others = [c for c in range(self.model().columnCount()) if c != self.stretch]
        widths = {c: self.needed_width(c) for c in others}
        # An emptier stretch column (no version has a note yet) needs no more than its own.
        room = self.viewport().width() - min(self.min_stretch, self.needed_width(self.stretch))
        shown = set(others)
        for column in self.droppable:
            if sum(widths[c] for c in shown) <= room:
                break
            shown.discard(column)
        for column in others:
            self.setColumnHidden(column, column not in shown)
