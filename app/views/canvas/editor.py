"""The DAG editor window: palette, canvas and property panel; files, undo and the actions.

The editor owns the undo stack; "modified" is `not undo_stack.isClean()`. Opening a file
lays it out when it has no `layout` (not an edit: the file is unmodified after opening).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from PySide6.QtCore import QMimeData, Qt, QTimer
from PySide6.QtGui import QCloseEvent, QGuiApplication, QUndoStack
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QWidget,
)

from app.errors import UserError
from app.models.dag_document import DagDocument
from app.models.spec import DagFileError, Problem
from app.views.bridge import EngineBridge
from app.views.canvas.actions import EditorActions
from app.views.canvas.commands import LayoutCommand, PasteCommand, RemoveNodesCommand
from app.views.canvas.file_gestures import FileGestures
from app.views.canvas.file_run import FileRunView
from app.views.canvas.items import KIND_COLORS, KIND_LABELS, NodeItem
from app.views.canvas.palette import NodePalette
from app.views.canvas.properties import PropertiesPanel
from app.views.canvas.run_view import RunWatcher
from app.views.canvas.scene import DagScene
from app.views.canvas.view import CanvasView
from app.views.icons import app_icon
from app.views.settings import qsettings
from app.views.style import STATE_COLORS
from app.views.submit import SubmitFlow

DAG_MIME = "application/x-labbatch-dag"  # copied jobs: the YAML of a small DAG
FILE_FILTER = "DAG files (*.yaml *.yml *.json);;All files (*)"
IMPORT_FILTER = "Scripts and graphs (*.py *.graphml *.dot *.gv *.yaml *.yml *.json)"
RECENT_KEY = "canvas/recent_files"
MAX_RECENT_FILES = 8
PASTE_OFFSET = 40.0
VALIDATE_AFTER_MS = 300  # problems are looked for once edits pause
Answer = QMessageBox.StandardButton


LEGEND_STATES = ("Pending", "Ready", "Running", "Success", "Failed", "Cancelled")


def legend_html(*, run: bool) -> str:
    """What the colours mean: a job's kind (its stripe) and, during a run, its state (fill)."""
    swatch = '<span style="color:{0}">■</span>&nbsp;{1}'
    kinds = [swatch.format(KIND_COLORS[k], KIND_LABELS[k]) for k in KIND_COLORS]
    text = " &nbsp;".join(kinds)
    if run:
        states = [swatch.format(STATE_COLORS[s], s.lower()) for s in LEGEND_STATES]
        text += " &nbsp;|&nbsp; " + " &nbsp;".join(states)
    return text


class CanvasWindow(QMainWindow):
    """Draw and edit a job DAG; open and save the YAML files the CLI runs.

    Tests replace `confirm_discard` (returns Save, Discard or Cancel), `ask_open_path` and
    `ask_save_path` (return a path, or "" when the user cancelled).
    """

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.path: str | None = None
        self.last_error = ""
        self.problems: list[Problem] = []
        self.confirm_discard: Callable[[], Answer] = self._ask_discard
        self.ask_open_path: Callable[[], str] = self._ask_open_path
        self.ask_import_path: Callable[[], str] = self._ask_import_path
        self.ask_save_path: Callable[[], str] = self._ask_save_path
        self.setWindowIcon(app_icon())

        self.document = DagDocument()
        self.undo_stack = QUndoStack(self)
        self.scene = DagScene(self.document, self)
        self.view = CanvasView(self.scene, self.undo_stack)
        self.palette = NodePalette()
        self.properties = PropertiesPanel(self.document, self.undo_stack)
        self.setCentralWidget(self.view)
        docks = [
            self._add_dock("Jobs", self.palette, Qt.DockWidgetArea.LeftDockWidgetArea),
            self._add_dock("Properties", self.properties, Qt.DockWidgetArea.RightDockWidgetArea),
        ]
        self.resizeDocks(docks, [150, 330], Qt.Orientation.Horizontal)
        self.problems_label = QLabel()
        self.legend = QLabel(legend_html(run=False))
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.statusBar().addPermanentWidget(self.legend)
        self.statusBar().addPermanentWidget(self.problems_label)
        self.submit_flow = SubmitFlow(bridge, self)
        self.submit_flow.submitted.connect(self._on_submitted)
        self.submitted_batch_id: int | None = None
        self.run_watcher = RunWatcher(bridge, self.scene, self.view, self)
        self.file_gestures = FileGestures(self.view)  # file drops, port menus
        self.file_run = FileRunView(bridge, self.scene.files, self.view, self.run_watcher)
        self.editor_actions = EditorActions(self)
        self._validate_timer = QTimer(self, singleShot=True, interval=VALIDATE_AFTER_MS)
        self._validate_timer.timeout.connect(self.refresh_problems)
        self._paste_count = 0

        self.palette.kind_activated.connect(
            lambda kind: self.view.add_node(kind, self.view.visible_scene_rect().center())
        )
        self.scene.selectionChanged.connect(self._on_selection_changed)
        self.undo_stack.cleanChanged.connect(self.update_title)
        self.undo_stack.indexChanged.connect(self._on_undo_index_changed)
        self.resize(1200, 760)
        self.update_title()
        self.refresh_problems()

    def _add_dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # -- state shown ----------------------------------------------------------------------------

    @property
    def modified(self) -> bool:
        return not self.undo_stack.isClean()

    def update_title(self) -> None:
        name = Path(self.path).name if self.path else "Untitled"
        self.setWindowTitle(f"{name}{'*' if self.modified else ''} — LabBatch DAG editor")

    def refresh_problems(self) -> None:
        """Validate the DAG as the CLI would; mark the jobs that have problems."""
        self._validate_timer.stop()
        self.problems = self.document.validate() if len(self.document) else []
        self.scene.mark_invalid({p.job for p in self.problems if p.job})
        n = len(self.problems)
        text = f"{n} problem{'s' if n != 1 else ''}" if n else "Valid"
        self.problems_label.setText(text if len(self.document) else "No jobs yet")
        self.problems_label.setStyleSheet("color: #c62828;" if n else "")
        self.problems_label.setToolTip("\n".join(str(p) for p in self.problems[:50]))

    def _on_undo_index_changed(self, _index: int) -> None:
        self.view.cancel_interaction()  # an undo during a drag: the drag is over
        self._validate_timer.start()

    def _on_selection_changed(self) -> None:
        selected = self.scene.selectedItems()
        node = selected[0] if len(selected) == 1 else None
        self.properties.show_node(node.node_id if isinstance(node, NodeItem) else None)

    def show_error(self, message: str, details: list[str] | None = None) -> None:
        """Tell the user what went wrong (a window that does not block the editor)."""
        self.last_error = message + ("\n" + "\n".join(details) if details else "")
        self.statusBar().showMessage(message, 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, "LabBatch", message, parent=self)
        if details:
            box.setDetailedText("\n".join(details))
            box.setInformativeText("\n".join(details[:10]))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # -- running --------------------------------------------------------------------------------

    def submit(self) -> None:
        """Check the drawn DAG as the CLI would, show its forecast, submit it, then watch it."""
        self.properties.commit()
        source = self.path or self.document.source
        self.submit_flow.submit_data(self.document.to_data(layout=False), source=source)

    def _on_submitted(self, batch_id: int) -> None:
        self.statusBar().showMessage(f"Submitted batch {batch_id}", 5000)
        self.submitted_batch_id = batch_id
        self.watch_batch(batch_id)

    def watch_batch(self, batch_id: int) -> None:
        """Colour the nodes by the states of a batch's jobs while it runs (not an edit)."""
        self.run_watcher.watch(batch_id)
        self.legend.setText(legend_html(run=True))

    # -- files ----------------------------------------------------------------------------------

    def maybe_discard(self) -> bool:
        """True when unsaved changes may go: none, saved now, or the user said discard."""
        if not self.modified:
            return True
        answer = self.confirm_discard()
        if answer == Answer.Save:
            return self.save()
        return answer == Answer.Discard

    def new_document(self) -> None:
        """Start an empty DAG (after asking about unsaved changes)."""
        if self.maybe_discard():
            self._show_document(DagDocument(), None)

    def open_dialog(self) -> None:
        if self.maybe_discard() and (path := self.ask_open_path()):
            self.open_file(path, ask=False)

    def open_file(self, path: str | Path, *, ask: bool = True) -> bool:
        """Open a DAG file; its problems of structure are shown and nothing changes."""
        if ask and not self.maybe_discard():
            return False
        try:
            document = DagDocument.load(path)
        except DagFileError as exc:
            n = len(exc.problems)
            self.show_error(
                f"{Path(path).name} was not opened: {n} problem{'s' if n != 1 else ''}",
                [str(p) for p in exc.problems],
            )
            return False
        self._show_document(document, str(path))
        self.add_recent_file(str(path))
        return True

    def import_dialog(self) -> None:
        if path := self.ask_import_path():
            self.import_file(path)

    def import_file(self, path: str | Path) -> None:
        """Import a script or graph off the event loop, then draw it here (asks about unsaved
        changes first); the status bar says so while it runs, and no longer once it ended."""
        message = f"Importing {Path(path).name}…"
        self.statusBar().showMessage(message)

        def ended(_task: object) -> None:
            if self.statusBar().currentMessage() == message:
                self.statusBar().clearMessage()

        task = self.bridge.call(
            self.bridge.service.import_dag(path),
            lambda imported: self.load_data(imported.data, source=imported.source),
            on_error=lambda exc: self.show_error(f"{Path(path).name} was not imported: {exc}"),
        )
        task.add_done_callback(ended)

    def load_data(self, data: Any, *, source: str) -> bool:
        """Show imported DAG data (not yet saved: Save asks where); False when refused."""
        if not self.maybe_discard():
            return False
        try:
            document = DagDocument.from_data(data, source=source)
        except DagFileError as exc:
            self.show_error(f"{source} was not imported", [str(p) for p in exc.problems])
            return False
        self._show_document(document, None)
        return True

    def _show_document(self, document: DagDocument, path: str | None) -> None:
        self.view.cancel_interaction()
        self.properties.show_node(None)
        self.document.replace(document)
        self.path = path
        self.undo_stack.clear()
        self.update_title()
        self.refresh_problems()
        self.view.fit_all()

    def save(self, path: str | Path | None = None) -> bool:
        """Save to `path`, to the open file, or where the user says; False if not saved."""
        self.properties.commit()
        target = str(path) if path else self.path or self.ask_save_path()
        if not target:
            return False
        try:
            self.document.save(target)
        except UserError as exc:
            self.show_error(str(exc))
            return False
        self.path = target
        self.undo_stack.setClean()
        self.add_recent_file(target)
        self.update_title()
        self.statusBar().showMessage(f"Saved {target}", 5000)
        return True

    def save_as(self) -> bool:
        path = self.ask_save_path()
        return bool(path) and self.save(path)

    def _ask_open_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self, "Open a DAG", "", FILE_FILTER)
        return path

    def _ask_import_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self, "Import a DAG", "", IMPORT_FILTER)
        return path

    def _ask_save_path(self) -> str:
        start = self.path or "dag.yaml"
        path, _ = QFileDialog.getSaveFileName(self, "Save the DAG", start, FILE_FILTER)
        return path

    def _ask_discard(self) -> Answer:
        name = Path(self.path).name if self.path else "this DAG"
        return QMessageBox.question(
            self,
            "Unsaved changes",
            f"Save the changes to {name}?",
            Answer.Save | Answer.Discard | Answer.Cancel,
            Answer.Save,
        )

    def recent_files(self) -> list[str]:
        value = qsettings().value(RECENT_KEY, [])
        if isinstance(value, str):
            return [value] if value else []
        return [str(v) for v in value or []]

    def add_recent_file(self, path: str) -> None:
        path = str(Path(path).resolve())
        files = [path, *(f for f in self.recent_files() if f != path)][:MAX_RECENT_FILES]
        qsettings().setValue(RECENT_KEY, files)
        self.editor_actions.refresh_recent_menu()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.properties.commit()
        if not self.maybe_discard():
            event.ignore()
            return
        self.view.cancel_interaction()
        self.run_watcher.stop()  # and its job dialogs
        self.scene.detach()
        self.properties.detach()
        event.accept()

    # -- editing actions ------------------------------------------------------------------------

    def delete_selection(self) -> None:
        """Delete the selected jobs (with their dependencies) and selected dependencies."""
        nodes, edges = self.scene.selected_node_ids(), self.scene.selected_edges()
        if nodes or edges:
            self.undo_stack.push(RemoveNodesCommand(self.document, nodes, edges))

    def auto_layout(self) -> None:
        """Lay every job out in layers, left to right (undoable)."""
        if len(self.document):
            self.undo_stack.push(LayoutCommand(self.document))
            self.view.fit_all()

    def copy_selection(self) -> None:
        """Put the selected jobs on the clipboard, as the YAML of a small DAG."""
        nodes = self.scene.selected_node_ids()
        if not nodes:
            return
        piece = DagDocument()
        piece.insert(self.document.fragment(nodes))
        text = piece.to_text()
        data = QMimeData()
        data.setData(DAG_MIME, text.encode())
        data.setText(text)
        QGuiApplication.clipboard().setMimeData(data)
        self._paste_count = 0

    def paste(self) -> None:
        """Insert the jobs on the clipboard, with new names, a little off their places."""
        data = QGuiApplication.clipboard().mimeData()
        if data is None or not (data.hasFormat(DAG_MIME) or data.hasText()):
            return
        text = bytes(data.data(DAG_MIME).data()).decode() if data.hasFormat(DAG_MIME) else ""
        try:
            piece = DagDocument.from_data(yaml.safe_load(text or data.text()), source="clipboard")
        except (DagFileError, ValueError, yaml.YAMLError):
            self.statusBar().showMessage("The clipboard holds no jobs to paste", 5000)
            return
        self._paste_count += 1
        self._insert_copy(piece, piece.node_ids, "Paste", self._paste_count * PASTE_OFFSET)

    def duplicate_selection(self) -> None:
        """Copy the selected jobs next to themselves, with new names."""
        nodes = self.scene.selected_node_ids()
        if nodes:
            self._insert_copy(self.document, nodes, "Duplicate", PASTE_OFFSET)

    def _insert_copy(
        self, source: DagDocument, node_ids: list[int], text: str, offset: float
    ) -> None:
        fragment = source.fragment(node_ids)
        if not fragment.nodes:
            return
        copied = self.document.copy_fragment(fragment, (offset, offset))
        command = PasteCommand(self.document, copied, text)
        self.undo_stack.push(command)
        self.scene.select_nodes(command.node_ids)

    def select_all(self) -> None:
        for item in self.scene.node_items.values():
            item.setSelected(True)
