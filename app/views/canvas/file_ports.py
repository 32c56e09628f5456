"""Files on the canvas: named input and output ports on job nodes, file nodes for batch
inputs and outputs, and the links between them.

`FileLayer` follows the document like the scene does (it subscribes after it, so node items
exist when it runs) and never changes the document. Ports are child items of their node, so
they follow a drag; links are redrawn when the scene redraws a node's edges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QStyleOptionGraphicsItem, QWidget

from app.models import dag_files
from app.models.dag_document import DagDocument
from app.models.dag_parts import (
    BatchFieldChanged,
    DocumentEvent,
    DocumentReset,
    EdgesAdded,
    EdgesRemoved,
    NodeChanged,
    NodeId,
    NodesMoved,
)
from app.views.canvas.items import NODE_HEIGHT, NODE_WIDTH, NodeItem, edge_path

if TYPE_CHECKING:
    from app.views.canvas.scene import DagScene

FILE_PORT_RADIUS = 5.0
FILE_PORT_HIT = 9.0
ROW_HEIGHT = 15.0
FILE_COLOR = "#43a047"  # file ports, links and file nodes: green, apart from job kinds
EXISTS_COLOR = "#2e7d32"  # a port whose file exists after a run
MISSING_COLOR = "#eceff1"
FILE_NODE_WIDTH = 140.0
FILE_NODE_HEIGHT = 26.0
FILE_NODE_GAP = 60.0  # between a file node and the job next to it


@cache
def _metrics() -> QFontMetricsF:
    from PySide6.QtGui import QFontDatabase

    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.SmallestReadableFont)
    return QFontMetricsF(font)


@dataclass(frozen=True, slots=True)
class PortKey:
    """A file port: a job's input or output (`node` None: a batch input or output node)."""

    node: NodeId | None
    side: str  # "in" | "out"
    name: str


class FilePortItem(QGraphicsItem):
    """A named file port: a small circle on a node's side with the file's name beside it."""

    def __init__(self, key: PortKey, row: int, parent: QGraphicsItem | None = None) -> None:
        super().__init__(parent)
        self.key = key
        self.exists: bool | None = None  # after a run: whether its file is there
        self.setAcceptHoverEvents(True)
        x = NODE_WIDTH if key.side == "out" else 0.0
        self.setPos(x, NODE_HEIGHT + 8 + row * ROW_HEIGHT)
        self.setToolTip(f"{'output' if key.side == 'out' else 'input'} {key.name}")
        self.label = _metrics().elidedText(key.name, Qt.TextElideMode.ElideRight, 80)

    def boundingRect(self) -> QRectF:
        if self.key.side == "out":
            return QRectF(-90, -ROW_HEIGHT / 2, 90 + FILE_PORT_RADIUS + 2, ROW_HEIGHT)
        return QRectF(-FILE_PORT_RADIUS - 2, -ROW_HEIGHT / 2, 92, ROW_HEIGHT)

    def hit(self, scene_pos: QPointF) -> bool:
        """Whether a scene point is on the port's circle (or close to it)."""
        delta = scene_pos - self.scenePos()
        return delta.x() ** 2 + delta.y() ** 2 <= FILE_PORT_HIT**2

    def set_exists(self, exists: bool | None) -> None:
        if exists != self.exists:
            self.exists = exists
            self.update()

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(FILE_COLOR), 1.4))
        fill = {True: EXISTS_COLOR, False: MISSING_COLOR, None: "#ffffff"}[self.exists]
        painter.setBrush(QBrush(QColor(fill)))
        painter.drawEllipse(QPointF(0, 0), FILE_PORT_RADIUS, FILE_PORT_RADIUS)
        painter.setPen(QPen(QColor("#37474f")))
        if self.key.side == "out":
            rect = QRectF(-88, -ROW_HEIGHT / 2, 80, ROW_HEIGHT)
            align = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        else:
            rect = QRectF(8, -ROW_HEIGHT / 2, 80, ROW_HEIGHT)
            align = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(rect, align, self.label)


class FileNodeItem(QGraphicsItem):
    """A batch input (a file the batch reads) or a batch output (where a file is written)."""

    def __init__(self, key: PortKey, text: str, tooltip: str) -> None:
        super().__init__()
        self.key = key
        self.text = _metrics().elidedText(text, Qt.TextElideMode.ElideMiddle, FILE_NODE_WIDTH - 16)
        self.setToolTip(tooltip)
        self.exists: bool | None = None

    def set_exists(self, exists: bool | None) -> None:
        if exists != self.exists:
            self.exists = exists
            self.update()

    def port_point(self) -> QPointF:
        """Where links attach, in scene coordinates."""
        x = FILE_NODE_WIDTH if self.key.side == "in" else 0.0
        return self.scenePos() + QPointF(x, FILE_NODE_HEIGHT / 2)

    def hit(self, scene_pos: QPointF) -> bool:
        delta = scene_pos - self.port_point()
        return delta.x() ** 2 + delta.y() ** 2 <= FILE_PORT_HIT**2

    def boundingRect(self) -> QRectF:
        return QRectF(-FILE_PORT_RADIUS - 2, -2, FILE_NODE_WIDTH + 2 * FILE_PORT_RADIUS + 4, 30)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(FILE_COLOR), 1.4))
        painter.setBrush(QBrush(QColor("#e8f5e9")))
        body = QRectF(0, 0, FILE_NODE_WIDTH, FILE_NODE_HEIGHT)
        painter.drawRoundedRect(body, 12, 12)
        painter.setPen(QPen(QColor("#1b5e20")))
        painter.drawText(body.adjusted(10, 0, -10, 0), Qt.AlignmentFlag.AlignCenter, self.text)
        painter.setPen(QPen(QColor(FILE_COLOR), 1.4))
        fill = {True: EXISTS_COLOR, False: MISSING_COLOR, None: "#ffffff"}[self.exists]
        painter.setBrush(QBrush(QColor(fill)))
        x = FILE_NODE_WIDTH if self.key.side == "in" else 0.0
        painter.drawEllipse(QPointF(x, FILE_NODE_HEIGHT / 2), FILE_PORT_RADIUS, FILE_PORT_RADIUS)


class FileLinkItem(QGraphicsPathItem):
    """A file read by a job: a dashed green curve from where it comes from to the input."""

    def __init__(self, start: QGraphicsItem, end: FilePortItem | FileNodeItem) -> None:
        super().__init__()
        self.start, self.end = start, end
        pen = QPen(QColor(FILE_COLOR), 1.4, Qt.PenStyle.DashLine)
        self.setPen(pen)
        self.setZValue(-1)
        self.update_path()

    def update_path(self) -> None:
        """Follow both ends."""
        self.setPath(edge_path(_anchor(self.start), _anchor(self.end), arrow=False))


def _anchor(item: QGraphicsItem) -> QPointF:
    if isinstance(item, FileNodeItem):
        return item.port_point()
    return item.scenePos()


FILE_FIELDS = frozenset({"name", "inputs", "outputs"})  # what ports and links are made of


def _touches_files(event: DocumentEvent) -> bool:
    """Whether an event can change the file items (typing a command cannot, nor an edge)."""
    if isinstance(event, NodeChanged | BatchFieldChanged):
        return event.field in FILE_FIELDS
    return not isinstance(event, EdgesAdded | EdgesRemoved)


class FileLayer:
    """The file items of a scene, made again from the document when its files change."""

    def __init__(self, scene: DagScene, document: DagDocument) -> None:
        self.scene = scene
        self.document = document
        self.ports: dict[PortKey, FilePortItem] = {}
        self.file_nodes: dict[PortKey, FileNodeItem] = {}
        self.links: list[FileLinkItem] = []
        self.visible = True
        self.unsubscribe = document.subscribe(self._on_event)
        self.rebuild()

    def _on_event(self, event: DocumentEvent) -> None:
        if isinstance(event, DocumentReset):
            self.ports, self.file_nodes, self.links = {}, {}, []  # the scene deleted them
        if isinstance(event, NodesMoved):
            self._place_file_nodes()
            self.update_links()
        elif _touches_files(event):
            self.rebuild()

    def _drop_items(self) -> None:
        scene = self.scene
        for item in [*self.ports.values(), *self.file_nodes.values(), *self.links]:
            if shiboken6.isValid(item) and item.scene() is scene:
                scene.removeItem(item)
        self.ports, self.file_nodes, self.links = {}, {}, []

    def rebuild(self) -> None:
        """Make every port, file node and link anew from the document."""
        self._drop_items()
        document, nodes = self.document, self.scene.node_items
        for node_id in document.node_ids:
            fields = document.fields(node_id)
            node = nodes[node_id]
            for side, names in (
                ("in", dag_files.job_inputs(fields)),
                ("out", dag_files.job_outputs(fields)),
            ):
                for row, name in enumerate(names):
                    key = PortKey(node_id, side, name)
                    self.ports[key] = FilePortItem(key, row, node)
        for name, location in dag_files.batch_inputs(document).items():
            key = PortKey(None, "in", name)
            where = location if isinstance(location, str) else ", ".join(location)
            self._add_file_node(key, name, f"batch input {name}: {where}")
        for k, target in enumerate(dag_files.batch_outputs(document)):
            key = PortKey(None, "out", str(k))
            text = str(target.get("to", "?"))
            self._add_file_node(key, text, f"batch output: {target.get('from')} → {text}")
        self._place_file_nodes()
        self._add_links()
        if not self.visible:
            self.set_visible(False)

    def _add_file_node(self, key: PortKey, text: str, tooltip: str) -> None:
        item = FileNodeItem(key, text, tooltip)
        self.scene.addItem(item)
        self.file_nodes[key] = item

    def _add_links(self) -> None:
        document = self.document
        for link in dag_files.file_links(document):
            end = self.ports.get(PortKey(link.target, "in", link.input))
            start: QGraphicsItem | None
            if link.source is None:
                start = self.file_nodes.get(PortKey(None, "in", link.output))
            else:
                start = self.ports.get(PortKey(link.source, "out", link.output))
            if start is not None and end is not None:
                self._add_link(start, end)
        for k, target in enumerate(dag_files.batch_outputs(document)):
            found = dag_files.resolve(document, str(target.get("from", "")))
            node = self.file_nodes[PortKey(None, "out", str(k))]
            if found is None:
                continue
            source = found[0]
            start = (
                self.file_nodes.get(PortKey(None, "in", found[1]))
                if source is None
                else self.ports.get(PortKey(source, "out", found[1]))
            )
            if start is not None:
                self._add_link(start, node)

    def _add_link(self, start: QGraphicsItem, end: FilePortItem | FileNodeItem) -> None:
        item = FileLinkItem(start, end)
        self.scene.addItem(item)
        self.links.append(item)

    def _place_file_nodes(self) -> None:
        """Batch inputs in a column left of every job, at the height of their first reader;
        batch outputs in a column right of every job, at the height of their writer."""
        document = self.document
        readers: dict[str, NodeId] = {}
        for link in dag_files.file_links(document):
            if link.source is None:
                readers.setdefault(link.output, link.target)
        xs = [x for x, _ in document.positions.values()] or [0.0]
        columns = {
            "in": min(xs) - FILE_NODE_WIDTH - FILE_NODE_GAP,
            "out": max(xs) + NODE_WIDTH + FILE_NODE_GAP,
        }
        targets = dag_files.batch_outputs(document)
        taken: dict[str, list[float]] = {"in": [], "out": []}
        for key, item in self.file_nodes.items():
            job: NodeId | None = readers.get(key.name)
            if key.side == "out":
                found = dag_files.resolve(document, str(targets[int(key.name)].get("from", "")))
                job = found[0] if found is not None else None
            y = document.position(job)[1] if job is not None and job in document else 0.0
            while any(abs(y - other) < FILE_NODE_HEIGHT + 6 for other in taken[key.side]):
                y += FILE_NODE_HEIGHT + 8  # below the file node already there
            taken[key.side].append(y)
            item.setPos(columns[key.side], y)

    def files_rect(self) -> QRectF:
        """The rectangle around the file nodes (empty when there are none)."""
        rect = QRectF()
        for item in self.file_nodes.values():
            if shiboken6.isValid(item):  # a scene's rebuild deletes them before we hear of it
                rect = rect.united(item.sceneBoundingRect())
        return rect

    def set_visible(self, visible: bool) -> None:
        """Show or hide every file item (hidden in the overview, where nodes are rectangles)."""
        self.visible = visible
        for item in [*self.ports.values(), *self.file_nodes.values(), *self.links]:
            item.setVisible(visible)

    def update_links(self, node_ids: Iterable[NodeId] | None = None) -> None:
        """Redraw links (all, or those touching these nodes' ports, after a drag step)."""
        wanted = None if node_ids is None else set(node_ids)
        for link in self.links:
            keys = {getattr(link.start, "key", None), getattr(link.end, "key", None)}
            if wanted is None or any(k is not None and k.node in wanted for k in keys):
                link.update_path()

    def item_at(self, scene_pos: QPointF) -> FilePortItem | FileNodeItem | None:
        """The file port (or file node port) under a scene point, if any."""
        for item in self.scene.items(QRectF(scene_pos.x() - 10, scene_pos.y() - 10, 20, 20)):
            if isinstance(item, FilePortItem | FileNodeItem) and item.hit(scene_pos):
                return item
        return None

    def source_at(self, scene_pos: QPointF) -> FilePortItem | FileNodeItem | None:
        """A file a drag can start from under a point: a job's output or a batch input."""
        item = self.item_at(scene_pos)
        if item is None:
            return None
        is_job_output = isinstance(item, FilePortItem) and item.key.side == "out"
        is_batch_input = isinstance(item, FileNodeItem) and item.key.side == "in"
        return item if is_job_output or is_batch_input else None

    def node_at(self, scene_pos: QPointF) -> NodeItem | None:
        """The job node under a point (its file ports count as the node)."""
        port = self.item_at(scene_pos)
        if isinstance(port, FilePortItem) and port.key.node is not None:
            return self.scene.node_items.get(port.key.node)
        return self.scene.node_at(scene_pos)
