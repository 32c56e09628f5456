"""Helpers of the canvas tests: a user's hand on the canvas (drops, drags, clicks), and what
the user sees (names, edges, pixels)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from app.views.canvas.items import NODE_HEIGHT, NODE_WIDTH, NodeItem
from app.views.canvas.view import CanvasView
from tests.views.conftest import EXAMPLES

Answer = QMessageBox.StandardButton
LEFT = Qt.MouseButton.LeftButton
NO_KEYS = Qt.KeyboardModifier.NoModifier


@asynccontextmanager
async def open_canvas(
    bridge: EngineBridge, width: int = 1200, height: int = 800
) -> AsyncIterator[CanvasWindow]:
    """A shown canvas window that closes without asking about unsaved changes."""
    win = CanvasWindow(bridge)
    win.confirm_discard = lambda: Answer.Discard
    win.resize(width, height)
    win.show()
    yield win
    win.confirm_discard = lambda: Answer.Discard  # a test may have replaced it
    win.close()


def example(tmp_path: Path, name: str) -> Path:
    """A copy of an example DAG, so that saving never touches the examples."""
    path = tmp_path / name
    shutil.copyfile(EXAMPLES / name, path)
    return path


def node(window: CanvasWindow, name: str) -> NodeItem:
    return next(item for item in window.scene.node_items.values() if item.name == name)


def point(view: CanvasView, item: NodeItem, where: str = "body") -> QPoint:
    """Where a node's body, input port or output port is on the screen."""
    if where == "body":
        return view.mapFromScene(item.pos() + QPointF(NODE_WIDTH / 2, NODE_HEIGHT / 2))
    return view.node_view_pos(item, where).toPoint()


def drag(view: CanvasView, start: QPoint, end: QPoint) -> None:
    viewport = view.viewport()
    QTest.mousePress(viewport, LEFT, NO_KEYS, start)
    for k in (1, 2, 3):
        QTest.mouseMove(viewport, start + (end - start) * k / 3)
    QTest.mouseRelease(viewport, LEFT, NO_KEYS, end)


def click(view: CanvasView, at: QPoint, keys: Qt.KeyboardModifier = NO_KEYS) -> None:
    QTest.mouseClick(view.viewport(), LEFT, keys, at)


def drop_kind(window: CanvasWindow, kind: str, at: QPoint) -> None:
    """Drag a kind from the palette and let go over the canvas at `at`."""
    palette = window.palette
    item = palette.item(palette.kinds().index(kind))
    data = palette.mimeData([item])
    enter = QDragEnterEvent(at, Qt.DropAction.CopyAction, data, LEFT, NO_KEYS)
    window.view.dragEnterEvent(enter)
    assert enter.isAccepted()
    window.view.dropEvent(QDropEvent(QPointF(at), Qt.DropAction.CopyAction, data, LEFT, NO_KEYS))


def names(window: CanvasWindow) -> list[str]:
    return [window.document.name(n) for n in window.document.node_ids]


def edges(window: CanvasWindow) -> set[tuple[str, str]]:
    name = window.document.name
    return {(name(p), name(c)) for p, c in window.document.edges}


def redo(window: CanvasWindow) -> None:
    window.editor_actions.redo.trigger()


def undo(window: CanvasWindow) -> None:
    window.editor_actions.undo.trigger()


def pixel(view: CanvasView, item: NodeItem) -> QColor:
    """The colour shown at the centre of a job."""
    image = view.viewport().grab().toImage()
    return image.pixelColor(point(view, item))
