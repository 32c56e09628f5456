"""Paint-only items of the DAG canvas: a job node with its ports, an edge with its arrow.

Items hold what they draw (texts are measured once, when the job changes) and nothing else;
the scene sets them from the document. At low zoom a node is a plain coloured rectangle.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QFontMetricsF,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPen,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QStyleOptionGraphicsItem,
    QWidget,
)

from app.models.dag_document import node_kind, scatter_count
from app.models.dag_parts import NodeId

NODE_WIDTH = 180.0
NODE_HEIGHT = 48.0
PORT_RADIUS = 6.0
PORT_HIT_RADIUS = 11.0  # a port is easier to grab than to see
SIMPLE_BELOW_LOD = 0.4  # below this zoom a node is a plain rectangle without text
STRIPE_WIDTH = 6.0

# a kind's stripe; apart from every state colour (a running job is blue: a bash job is not)
KIND_COLORS = {"bash": "#455a64", "container": "#00897b", "scatter": "#8e24aa"}
KIND_LABELS = {"bash": "bash job", "container": "container job", "scatter": "scatter job"}
INVALID_COLOR = "#e53935"
SELECTED_COLOR = "#ff8f00"
EDGE_COLOR = "#78909c"

_BODY = QRectF(0, 0, NODE_WIDTH, NODE_HEIGHT)
_BOUNDS = QRectF(-PORT_RADIUS - 2, -2, NODE_WIDTH + 2 * PORT_RADIUS + 4, NODE_HEIGHT + 4)
_TITLE_RECT = QRectF(STRIPE_WIDTH + 8, 4, NODE_WIDTH - STRIPE_WIDTH - 16, 22)
_SUBTITLE_RECT = QRectF(STRIPE_WIDTH + 8, 25, NODE_WIDTH - STRIPE_WIDTH - 16, 18)
INPUT_PORT = QPointF(0, NODE_HEIGHT / 2)
OUTPUT_PORT = QPointF(NODE_WIDTH, NODE_HEIGHT / 2)


@cache
def _fonts() -> tuple[QFont, QFont, QFontMetricsF, QFontMetricsF]:
    """The title and subtitle fonts and their metrics (made once, after the app exists)."""
    title = QFontDatabase.systemFont(QFontDatabase.SystemFont.GeneralFont)
    title.setBold(True)
    subtitle = QFontDatabase.systemFont(QFontDatabase.SystemFont.SmallestReadableFont)
    return title, subtitle, QFontMetricsF(title), QFontMetricsF(subtitle)


@cache
def _run_font() -> tuple[QFont, QFontMetricsF]:
    """The font of a run-time progress line: the title's, not bold (a smallest readable font
    can be larger than the general one, and the progress must fit)."""
    font = QFont(_fonts()[0])
    font.setBold(False)
    return font, QFontMetricsF(font)


@cache
def _pens() -> dict[str, QPen]:
    return {
        "border": QPen(QColor("#546e7a"), 1),
        "selected": QPen(QColor(SELECTED_COLOR), 3),
        "invalid": QPen(QColor(INVALID_COLOR), 2, Qt.PenStyle.DashLine),
        "port": QPen(QColor("#37474f"), 1),
        "text": QPen(QColor("#212121")),
        "subtext": QPen(QColor("#616161")),
        "edge": QPen(QColor(EDGE_COLOR), 1.6),
        "edge_selected": QPen(QColor(SELECTED_COLOR), 3),
    }


@cache
def _brush(color: str) -> QBrush:
    return QBrush(QColor(color))


class NodeItem(QGraphicsItem):
    """A job: a box with its name and kind, an input port on the left, an output on the right."""

    def __init__(self, node_id: NodeId, fields: Mapping[str, Any]) -> None:
        super().__init__()
        self.node_id = node_id
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)  # pans are blits
        self.name = ""
        self.title = ""
        self.subtitle = ""
        self.kind = "bash"
        self.invalid = False  # the job has a problem: drawn with a red dashed border
        self.fill: str | None = None  # a run-time colour (job state), drawn over the body
        self.run_text: str | None = None  # run-time progress, drawn in place of the kind
        self.run_tooltip: str | None = None  # run-time states, shown in place of the kind
        self._run_line = ""  # run_text elided to fit
        self._edit_tooltip = ""
        self.set_fields(fields)

    def set_fields(self, fields: Mapping[str, Any]) -> None:
        """Take what to draw from the job's fields."""
        _, _, title_metrics, sub_metrics = _fonts()
        self.kind = node_kind(fields)
        name = fields.get("name")
        text = name if isinstance(name, str) and name else "(no name)"
        self.name = text
        self.title = title_metrics.elidedText(
            text, Qt.TextElideMode.ElideRight, _TITLE_RECT.width()
        )
        subtitle = KIND_LABELS[self.kind]
        if self.kind == "scatter":
            count = scatter_count(fields)
            subtitle = f"scatter ×{count if count is not None else '?'}"
        elif self.kind == "container":
            subtitle = str(fields.get("image"))
        self.subtitle = sub_metrics.elidedText(
            subtitle, Qt.TextElideMode.ElideMiddle, _SUBTITLE_RECT.width()
        )
        self._edit_tooltip = f"{text} — {KIND_LABELS[self.kind]}"
        self.setToolTip(self.run_tooltip or self._edit_tooltip)
        self.update()

    def set_run_state(
        self, fill: str | None, text: str | None = None, tooltip: str | None = None
    ) -> None:
        """Show how the job runs: a state colour, a progress text, a tooltip (None: none)."""
        if (fill, text, tooltip) == (self.fill, self.run_text, self.run_tooltip):
            return
        self.fill, self.run_text, self.run_tooltip = fill, text, tooltip
        _, run_metrics = _run_font()
        self._run_line = (
            run_metrics.elidedText(text, Qt.TextElideMode.ElideRight, _SUBTITLE_RECT.width())
            if text
            else ""
        )
        self.setToolTip(tooltip or self._edit_tooltip)
        self.update()

    def set_invalid(self, invalid: bool) -> None:
        if invalid != self.invalid:
            self.invalid = invalid
            self.update()

    def boundingRect(self) -> QRectF:
        return _BOUNDS

    def input_point(self) -> QPointF:
        """Where edges end, in scene coordinates."""
        return self.pos() + INPUT_PORT

    def output_point(self) -> QPointF:
        """Where edges start, in scene coordinates."""
        return self.pos() + OUTPUT_PORT

    def port_at(self, item_pos: QPointF) -> str | None:
        """'in' or 'out' when `item_pos` (item coordinates) is on a port, else None."""
        for port, center in (("out", OUTPUT_PORT), ("in", INPUT_PORT)):
            delta = item_pos - center
            if delta.x() ** 2 + delta.y() ** 2 <= PORT_HIT_RADIUS**2:
                return port
        return None

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionGraphicsItem,
        widget: QWidget | None = None,
    ) -> None:
        pens = _pens()
        color = KIND_COLORS[self.kind]
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        if lod < SIMPLE_BELOW_LOD:
            painter.fillRect(
                _BODY, _brush(SELECTED_COLOR if self.isSelected() else self.fill or color)
            )
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self.isSelected():
            painter.setPen(pens["selected"])
        elif self.invalid:
            painter.setPen(pens["invalid"])
        else:
            painter.setPen(pens["border"])
        painter.setBrush(_brush(self.fill or "#fafafa"))
        painter.drawRoundedRect(_BODY, 5, 5)
        painter.fillRect(QRectF(1, 1, STRIPE_WIDTH, NODE_HEIGHT - 2), _brush(color))
        title_font, subtitle_font, _, _ = _fonts()
        painter.setFont(title_font)
        painter.setPen(pens["text"])
        align = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(_TITLE_RECT, align, self.title)
        painter.setFont(_run_font()[0] if self._run_line else subtitle_font)
        painter.setPen(pens["text" if self.fill else "subtext"])  # grey is faint on a fill
        painter.drawText(_SUBTITLE_RECT, align, self._run_line or self.subtitle)
        painter.setPen(pens["port"])
        painter.setBrush(_brush("#eceff1"))
        painter.drawEllipse(INPUT_PORT, PORT_RADIUS, PORT_RADIUS)
        painter.setBrush(_brush(color))
        painter.drawEllipse(OUTPUT_PORT, PORT_RADIUS, PORT_RADIUS)


def edge_path(start: QPointF, end: QPointF, *, arrow: bool = True) -> QPainterPath:
    """A cubic curve from an output port to an input port, with an arrow head at the end."""
    path = QPainterPath(start)
    dx = max(40.0, abs(end.x() - start.x()) / 2)
    path.cubicTo(start + QPointF(dx, 0), end - QPointF(dx, 0), end)
    if arrow:
        path.moveTo(end + QPointF(-9, -5))
        path.lineTo(end)
        path.lineTo(end + QPointF(-9, 5))
    return path


MAX_DETOURS = 4  # lanes tried, each past the jobs the previous one still crossed
DETOUR_MARGIN = 18.0


def detour_path(start: QPointF, end: QPointF, lane_y: float) -> QPainterPath:
    """From an output port to an input port along a horizontal lane at ``lane_y``."""
    path = QPainterPath(start)
    bend = 40.0
    a, b = QPointF(start.x() + 2 * bend, lane_y), QPointF(end.x() - 2 * bend, lane_y)
    path.cubicTo(start + QPointF(bend, 0), a - QPointF(bend, 0), a)
    path.lineTo(b)
    path.cubicTo(b + QPointF(bend, 0), end - QPointF(bend, 0), end)
    path.moveTo(end + QPointF(-9, -5))
    path.lineTo(end)
    path.lineTo(end + QPointF(-9, 5))
    return path


class EdgeItem(QGraphicsPathItem):
    """A dependency: a curve from the parent's output port to the child's input port."""

    def __init__(self, parent_item: NodeItem, child_item: NodeItem) -> None:
        super().__init__()
        self.parent_item = parent_item
        self.child_item = child_item
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setZValue(-1)  # under the nodes
        self.setPen(_pens()["edge"])
        self._shape: QPainterPath | None = None
        self.update_path()

    @property
    def edge(self) -> tuple[NodeId, NodeId]:
        return (self.parent_item.node_id, self.child_item.node_id)

    def update_path(self) -> None:
        """Follow the ends (after a node moved), around the jobs between them."""
        self._shape = None
        start = self.parent_item.output_point()
        end = self.child_item.input_point() - QPointF(PORT_RADIUS, 0)  # the arrow stays visible
        path = edge_path(start, end)
        if self.skips_layers:
            path = self._around_jobs(path, start, end)
        self.setPath(path)

    @property
    def skips_layers(self) -> bool:
        """True when jobs may stand between the ends (the edge passes over a column)."""
        span = self.child_item.input_point().x() - self.parent_item.output_point().x()
        return span > NODE_WIDTH and self.scene() is not None

    def _around_jobs(self, path: QPainterPath, start: QPointF, end: QPointF) -> QPainterPath:
        """Route over (or under) the jobs the curve would cross, not through them."""
        scene = self.scene()
        ends = (self.parent_item, self.child_item)
        stroker = QPainterPathStroker()
        stroker.setWidth(2)
        for _ in range(MAX_DETOURS):
            line = stroker.createStroke(path)  # the drawn line, not the area a curve encloses
            hit = [
                item.sceneBoundingRect()
                for item in scene.items(path.boundingRect())
                if isinstance(item, NodeItem)
                and item not in ends
                and line.intersects(item.sceneBoundingRect())
            ]
            if not hit:
                return path
            middle = (start.y() + end.y()) / 2
            if middle <= sum(r.center().y() for r in hit) / len(hit):
                lane = min(r.top() for r in hit) - DETOUR_MARGIN
            else:
                lane = max(r.bottom() for r in hit) + DETOUR_MARGIN
            path = detour_path(start, end, lane)
        return path

    def shape(self) -> QPainterPath:
        if self._shape is None:  # a wide band, so that a thin curve is easy to click
            stroker = QPainterPathStroker()
            stroker.setWidth(10)
            self._shape = stroker.createStroke(self.path())
        return self._shape

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionGraphicsItem,
        widget: QWidget | None = None,
    ) -> None:
        painter.setPen(_pens()["edge_selected" if self.isSelected() else "edge"])
        painter.drawPath(self.path())
