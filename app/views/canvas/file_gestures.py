"""File gestures on the canvas that are not drags between ports: files dropped from the file
manager become batch inputs (dropped on a job: inputs of that job, too); a port's context
menu writes an output somewhere ("Write to…") or removes an input or output. Each change is
one undo step."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QPoint, Qt
from PySide6.QtGui import QContextMenuEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMenu

from app.models import dag_files
from app.models.dag_document import CANVAS_SOURCE
from app.models.dag_parts import NodeId
from app.views.canvas import file_commands as fc
from app.views.canvas.file_ports import FileNodeItem, FilePortItem
from app.views.canvas.view import CanvasView


class FileGestures(QObject):
    """Watches the canvas viewport for file drops and context menus on file ports."""

    def __init__(self, view: CanvasView) -> None:
        super().__init__(view)
        self.view = view
        self.ask_destination: Callable[[str], str] = self._ask_destination
        self.last_menu: QMenu | None = None  # the menu shown last (for tests)
        view.viewport().installEventFilter(self)

    # -- drops ----------------------------------------------------------------------------------

    def local_files(self, event: QDropEvent | QDragEnterEvent | QDragMoveEvent) -> list[str]:
        """The local files a drag carries (none when it carries other things)."""
        data = event.mimeData()
        if not data.hasUrls():
            return []
        paths = [url.toLocalFile() for url in data.urls() if url.isLocalFile()]
        return [p for p in paths if p and os.path.isfile(p)]

    def add_inputs(self, paths: list[str], reader: NodeId | None = None) -> None:
        """Add batch inputs reading these files (relative to the DAG's folder when inside);
        dropped on a job (`reader`), each is also an input of that job, in the same step."""
        document = self.view.document
        source = document.source
        base = Path(source).resolve().parent if source != CANVAS_SOURCE else None
        for path in paths:
            location = path
            if base is not None and Path(path).resolve().is_relative_to(base):
                location = Path(path).resolve().relative_to(base).as_posix()
            if reader is None:
                self.view.undo_stack.push(fc.add_batch_input(document, location))
                continue
            name = dag_files.free_name(
                dag_files.batch_inputs(document), dag_files.name_for_location(location)
            )
            parts = [
                fc.add_batch_input(document, location, name),
                fc.connect_file(document, None, name, reader),
            ]
            text = f"Add input {name} to {document.name(reader)}"
            self.view.undo_stack.push(fc.CompoundCommand(text, parts))

    # -- menus ----------------------------------------------------------------------------------

    def port_menu(self, port: FilePortItem | FileNodeItem) -> QMenu:
        """The context menu of a file port."""
        document, stack = self.view.document, self.view.undo_stack
        key = port.key
        menu = QMenu(self.view)
        if isinstance(port, FilePortItem) and key.node is not None:
            node = key.node
            if key.side == "out":
                menu.addAction("Write to…").triggered.connect(lambda: self.write_to(port))
                menu.addAction(f"Remove output {key.name}").triggered.connect(
                    lambda: stack.push(fc.remove_output(document, node, key.name))
                )
            else:
                menu.addAction(f"Remove input {key.name}").triggered.connect(
                    lambda: stack.push(fc.remove_input(document, node, key.name))
                )
        elif key.side == "in":
            menu.addAction("Write to…").triggered.connect(lambda: self.write_to(port))
        else:
            index = int(key.name)
            menu.addAction("Remove this batch output").triggered.connect(
                lambda: stack.push(fc.remove_batch_output(document, index))
            )
        return menu

    def write_to(self, port: FilePortItem | FileNodeItem) -> None:
        """Ask where to write a file and add that batch output."""
        name = port.key.name
        destination = self.ask_destination(name)
        if destination:
            command = fc.write_to(self.view.document, port.key.node, name, destination)
            self.view.undo_stack.push(command)

    def _ask_destination(self, name: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self.view, f"Write {name} to", name)
        return path

    # -- events ---------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove) and isinstance(
            event, QDragEnterEvent | QDragMoveEvent
        ):
            if self.local_files(event):
                event.acceptProposedAction()
                return True
            return False
        if kind == QEvent.Type.Drop and isinstance(event, QDropEvent):
            paths = self.local_files(event)
            if not paths:
                return False
            node = self.view.canvas_scene.files.node_at(
                self.view.mapToScene(event.position().toPoint())
            )
            self.add_inputs(paths, node.node_id if node is not None else None)
            event.acceptProposedAction()
            return True
        if kind == QEvent.Type.ContextMenu and isinstance(event, QContextMenuEvent):
            return self.show_menu(event.pos(), event.globalPos())
        return False

    def show_menu(self, view_pos: QPoint, global_pos: QPoint) -> bool:
        """Pop up the menu of the file port at a viewport point; False when there is none."""
        port = self.view.canvas_scene.files.item_at(self.view.mapToScene(view_pos))
        if port is None:
            return False
        menu = self.port_menu(port)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.last_menu = menu
        menu.popup(global_pos)
        return True
