"""The scene that mirrors a DAG document: one item per node and per edge, kept by id.

The scene listens to the document's events and never changes the document; gestures change
items only while they last (a drag moves items, its command then moves the nodes).
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QPointF, QRectF, Signal
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene, QWidget

from app.models.dag_document import DagDocument
from app.models.dag_document_io import cyclic_gc_paused
from app.models.dag_parts import (
    BatchFieldChanged,
    DocumentEvent,
    DocumentReset,
    Edge,
    EdgesAdded,
    EdgesRemoved,
    NodeChanged,
    NodeId,
    NodesAdded,
    NodesMoved,
    NodesRemoved,
)
from app.views.canvas.file_ports import FileLayer
from app.views.canvas.items import NODE_HEIGHT, NODE_WIDTH, EdgeItem, NodeItem
from app.views.canvas.overview import OverviewPicture

SCENE_MARGIN = 400.0  # room around the nodes to pan into and to drop new ones
_NO_CONTENTS = QGraphicsItem.GraphicsItemFlag.ItemHasNoContents


class DagScene(QGraphicsScene):
    """Items for a DagDocument's nodes and edges, updated from its events.

    In overview mode (a view zoomed far out) the items draw nothing and the scene draws the
    whole graph at once as rectangles and lines, which is what keeps 10,000 nodes smooth.
    """

    picture_invalidated = Signal()  # nodes or edges changed: the overview is drawn again

    def __init__(self, document: DagDocument, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.document = document
        self.node_items: dict[NodeId, NodeItem] = {}
        self.edge_items: dict[Edge, EdgeItem] = {}
        self.overview = False
        self._picture: OverviewPicture | None = None  # None: to be drawn again
        self._unsubscribe = document.subscribe(self._on_document_event)
        self.selectionChanged.connect(self.picture_changed)
        self.rebuild()
        self.files = FileLayer(self, document)  # file ports and links; follows the document

    def detach(self) -> None:
        """Stop following the document (the editor is closing)."""
        self._unsubscribe()
        self.files.unsubscribe()

    # -- following the document -----------------------------------------------------------------

    def _on_document_event(self, event: DocumentEvent) -> None:
        self.picture_changed()
        match event:
            case NodesAdded(node_ids=ids):
                self._add_nodes(ids)
                self._grow_scene_rect()
            case NodesRemoved(node_ids=ids):
                self._remove_nodes(ids)
            case EdgesAdded(edges=edges):
                self._add_edges(edges)
            case EdgesRemoved(edges=edges):
                self._remove_edges(edges)
            case NodesMoved(node_ids=ids):
                self._move_nodes(ids)
                self._grow_scene_rect()
            case NodeChanged(node_id=node_id):
                self.node_items[node_id].set_fields(self.document.fields(node_id))
            case DocumentReset():
                self.rebuild()
            case BatchFieldChanged():
                pass

    def rebuild(self) -> None:
        """Make every item anew (a document was opened or started)."""
        self.clear()  # deletes the items
        self.node_items.clear()
        self.edge_items.clear()
        self.setSceneRect(QRectF())
        with cyclic_gc_paused():
            self._add_nodes(self.document.node_ids)
            self._add_edges(self.document.edges)
        self.setSceneRect(self.nodes_rect().adjusted(*_MARGINS))

    def _add_nodes(self, node_ids: Iterable[NodeId]) -> None:
        document = self.document
        positions = document.positions
        for node_id in node_ids:
            item = NodeItem(node_id, document.fields(node_id))
            item.setPos(*positions[node_id])
            item.setFlag(_NO_CONTENTS, self.overview)
            self.addItem(item)
            self.node_items[node_id] = item

    def _remove_nodes(self, node_ids: Iterable[NodeId]) -> None:
        for node_id in node_ids:
            self.removeItem(self.node_items.pop(node_id))

    def _add_edges(self, edges: Iterable[Edge]) -> None:
        nodes = self.node_items
        for parent, child in edges:
            item = EdgeItem(nodes[parent], nodes[child])
            item.setVisible(not self.overview)
            self.addItem(item)
            if item.skips_layers:  # in the scene now: it can see the jobs in its way
                item.update_path()
            self.edge_items[(parent, child)] = item

    def _remove_edges(self, edges: Iterable[Edge]) -> None:
        for edge in edges:
            self.removeItem(self.edge_items.pop(edge))

    def _move_nodes(self, node_ids: Iterable[NodeId]) -> None:
        positions = self.document.positions
        moved = list(node_ids)
        for node_id in moved:
            self.node_items[node_id].setPos(*positions[node_id])
        self.update_edges_of(moved)

    def _grow_scene_rect(self) -> None:
        wanted = self.nodes_rect().adjusted(*_MARGINS)
        if not self.sceneRect().contains(wanted):
            self.setSceneRect(self.sceneRect().united(wanted))

    # -- for gestures and the editor ------------------------------------------------------------

    def update_edges_of(self, node_ids: Iterable[NodeId]) -> None:
        """Redraw the edges that touch these nodes (their items moved)."""
        document, edge_items = self.document, self.edge_items
        touched: dict[Edge, None] = {}
        for node_id in node_ids:
            touched.update(((p, node_id), None) for p in document.parents(node_id))
            touched.update(((node_id, c), None) for c in document.children(node_id))
        for edge in touched:
            edge_items[edge].update_path()
        self.files.update_links(node_ids)
        self.picture_changed()

    def mark_invalid(self, names: set[str]) -> None:
        """Draw the jobs with these names as having problems."""
        for item in self.node_items.values():
            item.set_invalid(item.name in names)
        self.picture_changed()

    # -- the overview ---------------------------------------------------------------------------

    def set_overview(self, overview: bool) -> None:
        """Draw the graph at once (far out) or item by item (close up)."""
        if overview == self.overview:
            return
        self.overview = overview
        # Far out, nodes draw nothing but can still be clicked and rubber-banded; edges, too
        # thin to click anyway, leave the index walk, which then costs half as much.
        for node in self.node_items.values():
            node.setFlag(_NO_CONTENTS, overview)
        for edge in self.edge_items.values():
            edge.setVisible(not overview)
        self.files.set_visible(not overview)
        self.update()

    def picture(self) -> OverviewPicture:
        """The whole graph as coloured rectangles and lines (made again after changes)."""
        if self._picture is None:
            self._picture = OverviewPicture.of(self.node_items.values(), self.edge_items.values())
        return self._picture

    def picture_changed(self) -> None:
        self._picture = None
        if self.overview:
            self.update()
        self.picture_invalidated.emit()

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        super().drawBackground(painter, rect)
        if self.overview:
            self.picture().paint(painter)

    def nodes_rect(self) -> QRectF:
        """The rectangle around every node (and file node), from the document (cheaper than
        asking items)."""
        positions = self.document.positions
        if not positions:
            return QRectF(0, 0, NODE_WIDTH, NODE_HEIGHT)
        xs = [x for x, _ in positions.values()]
        ys = [y for _, y in positions.values()]
        left, top = min(xs), min(ys)
        rect = QRectF(left, top, max(xs) - left + NODE_WIDTH, max(ys) - top + NODE_HEIGHT)
        files = getattr(self, "files", None)  # None while the scene is being made
        return rect if files is None else rect.united(files.files_rect())

    def node_at(self, scene_pos: QPointF) -> NodeItem | None:
        """The node under a point, if any."""
        for item in self.items(scene_pos):
            if isinstance(item, NodeItem):
                return item
        return None

    def selected_node_ids(self) -> list[NodeId]:
        """The selected nodes, in file order."""
        selected = {i.node_id for i in self.selectedItems() if isinstance(i, NodeItem)}
        return [node_id for node_id in self.document.node_ids if node_id in selected]

    def selected_edges(self) -> list[Edge]:
        return [item.edge for item in self.selectedItems() if isinstance(item, EdgeItem)]

    def select_nodes(self, node_ids: Iterable[NodeId]) -> None:
        """Select exactly these nodes."""
        self.clearSelection()
        for node_id in node_ids:
            item = self.node_items.get(node_id)
            if item is not None:
                item.setSelected(True)


_MARGINS = (-SCENE_MARGIN, -SCENE_MARGIN, SCENE_MARGIN, SCENE_MARGIN)
