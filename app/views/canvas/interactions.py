"""Gestures on the canvas, one object per gesture: start (the constructor), update, finish,
cancel (Esc). Positions are in the view's viewport coordinates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from app.models.dag_parts import NodeId, Position
from app.views.canvas.commands import AddEdgeCommand, MoveNodesCommand
from app.views.canvas.items import NodeItem, edge_path

if TYPE_CHECKING:
    from app.views.canvas.view import CanvasView

MIN_DRAG_PX = 3  # a press that moves less is a click, not a drag


class Interaction:
    """One gesture in progress."""

    def __init__(self, view: CanvasView) -> None:
        self.view = view

    def update(self, pos: QPointF) -> None:
        """The pointer moved."""

    def finish(self, pos: QPointF) -> None:
        """The button was released: apply the gesture."""

    def cancel(self) -> None:
        """Esc, or the document changed under the gesture: undo what it showed."""


class NewEdgeInteraction(Interaction):
    """Drag from a node's output port to another node's input port (or from an input port
    back to an output port) to add a dependency; a refused one shows why, near the pointer."""

    def __init__(self, view: CanvasView, node: NodeItem, port: str) -> None:
        super().__init__(view)
        self.node_id = node.node_id
        self.from_output = port == "out"
        self.anchor = node.output_point() if self.from_output else node.input_point()
        self.line = QGraphicsPathItem()
        pen = QPen(QColor("#ff8f00"), 2, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.line.setPen(pen)
        self.line.setZValue(10)
        view.canvas_scene.addItem(self.line)

    def _ends(self, target: NodeId) -> tuple[NodeId, NodeId]:
        return (self.node_id, target) if self.from_output else (target, self.node_id)

    def update(self, pos: QPointF) -> None:
        scene_pos = self.view.mapToScene(pos.toPoint())
        if self.from_output:
            self.line.setPath(edge_path(self.anchor, scene_pos))
        else:
            self.line.setPath(edge_path(scene_pos, self.anchor))
        target = self.view.canvas_scene.node_at(scene_pos)
        if target is not None and target.node_id != self.node_id:
            reason = self.view.document.check_edge(*self._ends(target.node_id))
            if reason:
                self.view.show_hint(f"Cannot connect: {reason}", pos)
                return
        self.view.hide_hint()

    def finish(self, pos: QPointF) -> None:
        self.cancel()
        target = self.view.canvas_scene.node_at(self.view.mapToScene(pos.toPoint()))
        if target is None:
            return  # let go on empty canvas: nothing to connect
        parent, child = self._ends(target.node_id)
        document = self.view.document
        reason = document.check_edge(parent, child)
        if reason:
            self.view.show_hint(f"Cannot connect: {reason}", pos)
        else:
            self.view.hide_hint()
            self.view.undo_stack.push(AddEdgeCommand(document, parent, child))

    def cancel(self) -> None:
        if self.line.scene() is not None:
            self.view.canvas_scene.removeItem(self.line)


class MoveNodesInteraction(Interaction):
    """Drag selected jobs; the items follow the pointer, and the release is one move command."""

    def __init__(self, view: CanvasView, pos: QPointF) -> None:
        super().__init__(view)
        self.press = pos
        self.press_scene = view.mapToScene(pos.toPoint())
        self.node_ids = view.canvas_scene.selected_node_ids()
        self.old: dict[NodeId, Position] = {n: view.document.position(n) for n in self.node_ids}
        self.new: dict[NodeId, Position] = dict(self.old)
        self.dragging = False

    def update(self, pos: QPointF) -> None:
        if not self.dragging and (pos - self.press).manhattanLength() < MIN_DRAG_PX:
            return
        self.dragging = True
        delta = self.view.mapToScene(pos.toPoint()) - self.press_scene
        scene = self.view.canvas_scene
        for node_id, (x, y) in self.old.items():
            new = (x + delta.x(), y + delta.y())
            self.new[node_id] = new
            scene.node_items[node_id].setPos(*new)
        scene.update_edges_of(self.node_ids)

    def finish(self, pos: QPointF) -> None:
        self.update(pos)
        if self.dragging and self.new != self.old:
            command = MoveNodesCommand(self.view.document, self.old, self.new)
            self.view.undo_stack.push(command)

    def cancel(self) -> None:
        scene = self.view.canvas_scene
        for node_id, (x, y) in self.old.items():
            scene.node_items[node_id].setPos(x, y)
        scene.update_edges_of(self.node_ids)


class PanInteraction(Interaction):
    """Middle-drag, or space and drag: the canvas follows the pointer."""

    def __init__(self, view: CanvasView, pos: QPointF) -> None:
        super().__init__(view)
        self.last = pos
        view.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)

    def update(self, pos: QPointF) -> None:
        delta = pos - self.last
        self.last = pos
        horizontal = self.view.horizontalScrollBar()
        vertical = self.view.verticalScrollBar()
        horizontal.setValue(horizontal.value() - round(delta.x()))
        vertical.setValue(vertical.value() - round(delta.y()))

    def finish(self, pos: QPointF) -> None:
        self.update(pos)
        self.cancel()

    def cancel(self) -> None:
        self.view.viewport().unsetCursor()
