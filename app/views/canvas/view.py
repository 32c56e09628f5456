"""The canvas view: zoom and pan, drops from the palette, and which gesture a press starts."""

from __future__ import annotations

import copy

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QResizeEvent,
    QUndoStack,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsView, QLabel, QWidget

from app.models.dag_document import NODE_TEMPLATES
from app.views.canvas.commands import AddNodeCommand
from app.views.canvas.file_interactions import FileLinkInteraction
from app.views.canvas.interactions import (
    Interaction,
    MoveNodesInteraction,
    NewEdgeInteraction,
    PanInteraction,
)
from app.views.canvas.items import NODE_HEIGHT, NODE_WIDTH, NodeItem
from app.views.canvas.minimap import Minimap
from app.views.canvas.palette import NODE_KIND_MIME
from app.views.canvas.scene import DagScene

MIN_ZOOM, MAX_ZOOM = 0.001, 4.0
OVERVIEW_BELOW_ZOOM = 0.2  # farther out, the scene draws the graph at once
WHEEL_STEP = 1.15  # zoom factor per wheel notch
HINT_SHOWN_MS = 4000


class CanvasView(QGraphicsView):
    """Shows a DagScene; wheel zooms under the pointer, F fits, middle-drag or space pans."""

    zoomed = Signal()  # the scale changed

    def __init__(
        self, scene: DagScene, undo_stack: QUndoStack, parent: QWidget | None = None
    ) -> None:
        super().__init__(scene, parent)
        self.canvas_scene = scene
        self.document = scene.document
        self.undo_stack = undo_stack
        self.interaction: Interaction | None = None
        self.space_held = False
        self.setDragMode(QGraphicsView.DragMode.RubberBandDrag)
        self.setRubberBandSelectionMode(Qt.ItemSelectionMode.IntersectsItemShape)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.hint_label = QLabel(self.viewport())  # why an edge was refused, by the pointer
        self.hint_label.setStyleSheet(
            "QLabel { background: #ffebee; color: #b71c1c; border: 1px solid #e53935;"
            " border-radius: 3px; padding: 3px 6px; }"
        )
        self.hint_label.hide()
        self._hint_timer = QTimer(self, singleShot=True, interval=HINT_SHOWN_MS)
        self._hint_timer.timeout.connect(self.hide_hint)
        self.minimap = Minimap(self)
        self._fit_when_shown = False  # fit_all before the view had its size

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit_when_shown and self.isVisible():
            self._fit_when_shown = False
            self.fit_all()
        corner = self.viewport().geometry().bottomRight()
        self.minimap.move(
            corner.x() - self.minimap.width() - 8, corner.y() - self.minimap.height() - 8
        )

    # -- zoom -----------------------------------------------------------------------------------

    @property
    def zoom(self) -> float:
        """The scale: 1 is one scene unit per pixel."""
        return self.transform().m11()

    def zoom_by(self, factor: float) -> None:
        """Zoom in (factor > 1) or out, within limits, about the pointer or the centre."""
        factor = max(MIN_ZOOM / self.zoom, min(MAX_ZOOM / self.zoom, factor))
        self.scale(factor, factor)
        self._on_zoomed()

    def fit_all(self) -> None:
        """Show every node."""
        self._fit_when_shown = not self.isVisible()
        rect = self.canvas_scene.nodes_rect().adjusted(-40, -40, 40, 40)
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        if self.zoom > 1.5:  # a few nodes: do not blow them up
            self.zoom_by(1.5 / self.zoom)
        self._on_zoomed()

    def _on_zoomed(self) -> None:
        self.canvas_scene.set_overview(self.zoom < OVERVIEW_BELOW_ZOOM)
        self.zoomed.emit()

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        # the scale may have changed by setTransform, which tells no one: decide here, before
        # the items are drawn
        self.canvas_scene.set_overview(self.zoom < OVERVIEW_BELOW_ZOOM)
        super().drawBackground(painter, rect)

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120
        if notches:
            self.zoom_by(WHEEL_STEP**notches)
        event.accept()

    # -- hints ----------------------------------------------------------------------------------

    def show_hint(self, text: str, pos: QPointF) -> None:
        """Show a short message next to the pointer (a refused edge); it hides by itself."""
        self.hint_label.setText(text)
        self.hint_label.adjustSize()
        x = min(int(pos.x()) + 16, max(0, self.viewport().width() - self.hint_label.width()))
        self.hint_label.move(x, int(pos.y()) + 16)
        self.hint_label.show()
        self.hint_label.raise_()
        self._hint_timer.start()

    def hide_hint(self) -> None:
        self.hint_label.hide()

    # -- gestures -------------------------------------------------------------------------------

    def cancel_interaction(self) -> None:
        if self.interaction is not None:
            self.interaction.cancel()
            self.interaction = None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self.interaction is not None:
            event.accept()
            return
        pos = event.position()
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self.space_held
        ):
            self.interaction = PanInteraction(self, pos)
            event.accept()
            return
        if button != Qt.MouseButton.LeftButton:
            super().mousePressEvent(event)
            return
        file_source = self.canvas_scene.files.source_at(self.mapToScene(pos.toPoint()))
        if file_source is not None:
            self.interaction = FileLinkInteraction(self, file_source)
            event.accept()
            return
        node = self.canvas_scene.node_at(self.mapToScene(pos.toPoint()))
        port = node.port_at(node.mapFromScene(self.mapToScene(pos.toPoint()))) if node else None
        if node is not None and port is not None:
            self.interaction = NewEdgeInteraction(self, node, port)
            event.accept()
            return
        super().mousePressEvent(event)  # selection and the rubber band
        if node is not None and node.isSelected():
            self.interaction = MoveNodesInteraction(self, pos)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self.interaction is not None:
            self.interaction.update(event.position())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        interaction, self.interaction = self.interaction, None
        if interaction is not None:
            interaction.finish(event.position())
            if not isinstance(interaction, MoveNodesInteraction):
                event.accept()
                return
        super().mouseReleaseEvent(event)  # lets a click without a drag select one node

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Escape:
            if self.interaction is not None:
                self.cancel_interaction()
            else:
                self.canvas_scene.clearSelection()
            self.hide_hint()
            event.accept()
        elif key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.space_held = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            event.accept()
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self.space_held = False
            self.viewport().unsetCursor()
            event.accept()
        else:
            super().keyReleaseEvent(event)

    # -- drops from the palette -----------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasFormat(NODE_KIND_MIME):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if event.mimeData().hasFormat(NODE_KIND_MIME):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        """A node kind from the palette: add a job of that kind where it was dropped."""
        kind = bytes(event.mimeData().data(NODE_KIND_MIME).data()).decode()
        if kind not in NODE_TEMPLATES:
            event.ignore()
            return
        self.add_node(kind, self.mapToScene(event.position().toPoint()))
        event.acceptProposedAction()

    def add_node(self, kind: str, center: QPointF) -> None:
        """Add a job of a palette kind centred on a scene point, with a name not in use."""
        fields = copy.deepcopy(NODE_TEMPLATES[kind])
        fields["name"] = self.document.unique_name(fields["name"])
        position = (center.x() - NODE_WIDTH / 2, center.y() - NODE_HEIGHT / 2)
        command = AddNodeCommand(self.document, fields, position)
        self.undo_stack.push(command)
        if command.node_id is not None:
            self.canvas_scene.select_nodes([command.node_id])

    def visible_scene_rect(self) -> QRectF:
        return self.mapToScene(self.viewport().rect()).boundingRect()

    def node_view_pos(self, node: NodeItem, port: str) -> QPointF:
        """Where a node's port is in viewport coordinates (for tests and tools)."""
        point = node.output_point() if port == "out" else node.input_point()
        return QPointF(self.mapFromScene(point))
