"""Gestures with files: drag from an output port (or a batch input) onto a job to make it an
input of that job; the release is one undo step, a refused one says why by the pointer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from app.models import dag_files
from app.models.dag_parts import NodeId
from app.views.canvas.file_commands import connect_file
from app.views.canvas.file_ports import FILE_COLOR, FileNodeItem, FilePortItem
from app.views.canvas.interactions import Interaction
from app.views.canvas.items import edge_path

if TYPE_CHECKING:
    from app.views.canvas.view import CanvasView


class FileLinkInteraction(Interaction):
    """Drag a file (a job's output port or a batch input) to a job that should read it."""

    def __init__(self, view: CanvasView, port: FilePortItem | FileNodeItem) -> None:
        super().__init__(view)
        self.source: NodeId | None = port.key.node
        self.output = port.key.name
        self.anchor = port.port_point() if isinstance(port, FileNodeItem) else port.scenePos()
        self.line = QGraphicsPathItem()
        pen = QPen(QColor(FILE_COLOR), 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.line.setPen(pen)
        self.line.setZValue(10)
        view.canvas_scene.addItem(self.line)

    def _target(self, pos: QPointF) -> tuple[NodeId | None, str | None]:
        """The job under the pointer and why it cannot read the file (None: it can)."""
        node = self.view.canvas_scene.files.node_at(self.view.mapToScene(pos.toPoint()))
        if node is None:
            return None, None
        document = self.view.document
        return node.node_id, dag_files.check_connect(
            document, self.source, self.output, node.node_id
        )

    def update(self, pos: QPointF) -> None:
        self.line.setPath(edge_path(self.anchor, self.view.mapToScene(pos.toPoint())))
        target, reason = self._target(pos)
        if target is not None and reason:
            self.view.show_hint(f"Cannot connect: {reason}", pos)
        else:
            self.view.hide_hint()

    def finish(self, pos: QPointF) -> None:
        self.cancel()
        target, reason = self._target(pos)
        if target is None:
            return
        if reason:
            self.view.show_hint(f"Cannot connect: {reason}", pos)
            return
        self.view.hide_hint()
        self.view.undo_stack.push(
            connect_file(self.view.document, self.source, self.output, target)
        )

    def cancel(self) -> None:
        if self.line.scene() is not None:
            self.view.canvas_scene.removeItem(self.line)
