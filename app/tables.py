"""A table that stays readable when narrow: one column takes the room that is left, and
columns that matter less make way for it."""

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget


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

    def fit_columns(self) -> None:
        header = self.horizontalHeader()
        others = [c for c in range(self.model().columnCount()) if c != self.stretch]
        widths = {c: max(self.sizeHintForColumn(c), header.sectionSizeHint(c)) for c in others}
        room = self.viewport().width() - self.min_stretch
        shown = set(others)
        for column in self.droppable:
            if sum(widths[c] for c in shown) <= room:
                break
            shown.discard(column)
        for column in others:
            self.setColumnHidden(column, column not in shown)
