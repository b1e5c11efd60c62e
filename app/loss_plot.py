"""A light live plot of the training loss, painted with QPainter."""

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from oppu.app.widgets import HINT_COLOR

MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 12, 10, 24
STEP_LABEL_ROOM = 64  # "step 1234" at either end of the x axis


class LossPlot(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.points: list[tuple[float, float]] = []  # (step, loss)
        self.caption = ""  # which run the points are from, when it is not the live one
        self.setMinimumHeight(130)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(420, 150)

    def clear(self) -> None:
        self.show_points([])

    def show_points(self, points: list[tuple[float, float]], caption: str = "") -> None:
        self.points = [(float(step), float(loss)) for step, loss in points]
        self.caption = caption
        self.update()

    def add_point(self, step: float, loss: float) -> None:
        if self.points and step <= self.points[-1][0]:
            return  # a repeated report of the same step
        self.points.append((float(step), float(loss)))
        self.update()

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#ffffff"))
        area = QRectF(MARGIN_LEFT, MARGIN_TOP, self.width() - MARGIN_LEFT - MARGIN_RIGHT,
                      self.height() - MARGIN_TOP - MARGIN_BOTTOM)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1.5))
        painter.setFont(font)
        if not self.points or area.width() < 10 or area.height() < 10:
            painter.setPen(QColor("#8d94ad"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                             "The training loss appears here as your model learns.")
            return
        steps = [s for s, _ in self.points]
        losses = [v for _, v in self.points]
        x0, x1 = min(steps), max(steps)
        low, high = min(losses), max(losses)
        pad = (high - low) * 0.08 or 0.5
        low, high = max(0.0, low - pad), high + pad  # a loss is never negative

        def at(step: float, loss: float) -> QPointF:
            x = area.left() + (step - x0) / ((x1 - x0) or 1) * area.width()
            y = area.bottom() - (loss - low) / (high - low) * area.height()
            return QPointF(x, y)

        grid = QPen(QColor("#eceef5"))
        labels = QColor(HINT_COLOR)
        for i in range(5):
            value = low + (high - low) * i / 4
            y = area.bottom() - area.height() * i / 4
            painter.setPen(grid)
            painter.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
            painter.setPen(labels)
            painter.drawText(QRectF(0, y - 8, MARGIN_LEFT - 6, 16),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             f"{value:.2f}")
        painter.drawText(QRectF(area.left(), area.bottom() + 4, area.width(), 16),
                         Qt.AlignmentFlag.AlignLeft, f"step {x0:g}")
        painter.drawText(QRectF(area.left(), area.bottom() + 4, area.width(), 16),
                         Qt.AlignmentFlag.AlignRight, f"step {x1:g}")
        # Under the plot, between the step labels: a caption above it would hide the curve.
        title = f"training loss · {self.caption}" if self.caption else "training loss"
        title = painter.fontMetrics().elidedText(title, Qt.TextElideMode.ElideRight,
                                                 int(area.width()) - 2 * STEP_LABEL_ROOM)
        painter.drawText(QRectF(area.left(), area.bottom() + 4, area.width(), 16),
                         Qt.AlignmentFlag.AlignHCenter, title)

        path = QPainterPath(at(*self.points[0]))
        for point in self.points[1:]:
            path.lineTo(at(*point))
        painter.setPen(QPen(QColor("#4a5ae8"), 2))
        painter.drawPath(path)
        painter.setBrush(QColor("#4a5ae8"))
        painter.drawEllipse(at(*self.points[-1]), 3, 3)
