"""The application icon, drawn rather than shipped: three nodes of a DAG."""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap


@cache
def app_icon() -> QIcon:
    icon = QIcon()
    for size in (16, 32, 64, 128):
        icon.addPixmap(_draw(size))
    return icon


def _draw(size: int) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 64
    top, left, right = QPointF(32 * s, 14 * s), QPointF(16 * s, 48 * s), QPointF(48 * s, 48 * s)
    p.setPen(QPen(QColor("#90a4ae"), max(1.0, 4 * s)))
    p.drawLine(top, left)
    p.drawLine(top, right)
    p.setPen(Qt.PenStyle.NoPen)
    for center, color in ((top, "#1e88e5"), (left, "#43a047"), (right, "#fb8c00")):
        p.setBrush(QColor(color))
        p.drawEllipse(center, 11 * s, 11 * s)
    p.end()
    return pixmap
