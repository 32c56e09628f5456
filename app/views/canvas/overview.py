"""The graph drawn at once, for a view zoomed far out and for the minimap.

Far out, drawing 10,000 items one by one costs more than a frame; one call per colour for the
nodes and one for the edges costs a few milliseconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from PySide6.QtCore import QLineF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen

from app.views.canvas.items import (
    EDGE_COLOR,
    INVALID_COLOR,
    KIND_COLORS,
    NODE_HEIGHT,
    NODE_WIDTH,
    SELECTED_COLOR,
    EdgeItem,
    NodeItem,
)


@dataclass(slots=True)
class OverviewPicture:
    """Node rectangles grouped by colour, and edges as straight lines, in scene coordinates."""

    rects_by_color: dict[str, list[QRectF]] = field(default_factory=dict)
    lines: list[QLineF] = field(default_factory=list)
    bounds: QRectF = field(default_factory=QRectF)

    @classmethod
    def of(cls, nodes: Iterable[NodeItem], edges: Iterable[EdgeItem]) -> OverviewPicture:
        """The picture of these items where they are now."""
        rects: dict[str, list[QRectF]] = defaultdict(list)
        xs: list[float] = []
        ys: list[float] = []
        for node in nodes:
            if node.isSelected():
                color = SELECTED_COLOR
            elif node.invalid:
                color = INVALID_COLOR
            else:
                color = node.fill or KIND_COLORS[node.kind]
            x, y = node.x(), node.y()
            xs.append(x)
            ys.append(y)
            rects[color].append(QRectF(x, y, NODE_WIDTH, NODE_HEIGHT))
        lines = [QLineF(e.parent_item.output_point(), e.child_item.input_point()) for e in edges]
        bounds = QRectF()
        if xs:
            left, top = min(xs), min(ys)
            bounds = QRectF(left, top, max(xs) - left + NODE_WIDTH, max(ys) - top + NODE_HEIGHT)
        return cls(dict(rects), lines, bounds)

    def paint(self, painter: QPainter) -> None:
        """Draw it with the painter's transform (scene coordinates)."""
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        pen = QPen(QColor(EDGE_COLOR), 0)  # cosmetic: one pixel at any zoom
        painter.setPen(pen)
        painter.drawLines(self.lines)
        painter.setPen(Qt.PenStyle.NoPen)
        for color, rects in self.rects_by_color.items():
            painter.setBrush(QColor(color))
            painter.drawRects(rects)
        painter.restore()
