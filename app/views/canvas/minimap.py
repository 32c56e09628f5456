"""The minimap: the whole graph small, the visible part framed; click or drag to go there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from app.views.canvas.view import CanvasView

MINIMAP_WIDTH, MINIMAP_HEIGHT = 220, 140
MARGIN_PX = 6


class Minimap(QWidget):
    """An overlay in a corner of the canvas view."""

    def __init__(self, view: CanvasView) -> None:
        super().__init__(view)
        self.view = view
        self.setFixedSize(MINIMAP_WIDTH, MINIMAP_HEIGHT)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click or drag to show that part of the DAG")
        self._pixmap: QPixmap | None = None  # the graph, drawn again after changes
        self._to_minimap = QTransform()
        view.canvas_scene.picture_invalidated.connect(self._on_picture_invalidated)
        view.zoomed.connect(self.update)
        view.horizontalScrollBar().valueChanged.connect(self.update)
        view.verticalScrollBar().valueChanged.connect(self.update)

    def _on_picture_invalidated(self) -> None:
        self._pixmap = None
        self.update()

    def _render(self) -> QPixmap:
        picture = self.view.canvas_scene.picture()
        pixmap = QPixmap(self.size() * self.devicePixelRatioF())
        pixmap.setDevicePixelRatio(self.devicePixelRatioF())
        pixmap.fill(QColor(250, 250, 250, 235))
        bounds = picture.bounds if not picture.bounds.isNull() else QRectF(0, 0, 1, 1)
        inner = QRectF(self.rect()).adjusted(MARGIN_PX, MARGIN_PX, -MARGIN_PX, -MARGIN_PX)
        scale = min(
            inner.width() / max(bounds.width(), 1), inner.height() / max(bounds.height(), 1)
        )
        dx = inner.left() + (inner.width() - bounds.width() * scale) / 2 - bounds.left() * scale
        dy = inner.top() + (inner.height() - bounds.height() * scale) / 2 - bounds.top() * scale
        self._to_minimap = QTransform(scale, 0, 0, scale, dx, dy)
        painter = QPainter(pixmap)
        painter.setTransform(self._to_minimap)
        picture.paint(painter)
        painter.end()
        return pixmap

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._pixmap is None:
            self._pixmap = self._render()
        painter = QPainter(self)
        painter.drawPixmap(0, 0, self._pixmap)
        painter.setPen(QPen(QColor("#ff8f00"), 2))
        painter.drawRect(self._to_minimap.mapRect(self.view.visible_scene_rect()))
        painter.setPen(QPen(QColor("#90a4ae"), 1))
        painter.drawRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5))
        painter.end()

    def minimap_point(self, scene_point: QPointF) -> QPointF:
        """Where a scene point is drawn on the minimap (as of its last paint)."""
        return self._to_minimap.map(scene_point)

    def scene_point(self, pos: QPointF) -> QPointF:
        """The scene point shown at a point of the minimap."""
        inverse, _ok = self._to_minimap.inverted()
        return inverse.map(pos)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.view.centerOn(self.scene_point(event.position()))
            event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self.view.centerOn(self.scene_point(event.position()))
            event.accept()
