"""Files of a run on the canvas: ports whose files exist are coloured, and a double-click on
an output port of a finished job shows where its file is, its size, the first lines of a text
file, and "Save as…". Everything is read through the engine service."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QFontDatabase, QMouseEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import StoredFile
from app.models import dag_files
from app.models.dag_parts import DocumentEvent, DocumentReset
from app.models.units import format_bytes
from app.views.bridge import EngineBridge
from app.views.canvas.file_ports import FileLayer, FilePortItem, PortKey
from app.views.canvas.run_view import RunWatcher
from app.views.canvas.view import CanvasView


def _node_name(job: str, names: set[str]) -> str | None:
    """The node a job belongs to: its own name, or a scatter job's node (`align.a`)."""
    if job in names:
        return job
    head = job.rsplit(".", 1)[0]
    return head if head in names else None


def existing_outputs(
    files: list[StoredFile], names: set[str], *, kept: bool = True
) -> dict[tuple[str, str], bool]:
    """(node name, output name) -> whether every file of it exists: kept in scratch, or
    (`kept` false) copied to its batch output's destination."""
    found: dict[tuple[str, str], bool] = {}
    for f in files:
        node = _node_name(f.job, names)
        if node is None or f.kept != kept:
            continue
        key = (node, f.name.split(".", 1)[0])
        found[key] = found.get(key, True) and f.size_bytes is not None
    return found


class OutputDialog(QDialog):
    """One job output after a run: location and size of each file, the first lines of text."""

    def __init__(
        self, ref: str, files: list[StoredFile], preview: str | None, parent: QWidget | None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Output {ref}")
        self.ref = ref
        self.files = files
        layout = QVBoxLayout(self)
        lines = []
        for f in files:
            size = "not there" if f.size_bytes is None else f"{format_bytes(f.size_bytes)}B"
            lines.append(f"<b>{f.name}</b> — {size}<br><code>{f.where}</code>")
        self.where_label = QLabel("<br>".join(lines))
        self.where_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.where_label.setWordWrap(True)
        layout.addWidget(self.where_label)
        self.preview = QPlainTextEdit(preview or "")
        self.preview.setReadOnly(True)
        self.preview.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.preview.setVisible(preview is not None)
        layout.addWidget(self.preview)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.save_button = buttons.addButton("Save as…", QDialogButtonBox.ButtonRole.ActionRole)
        self.save_button.setEnabled(all(f.size_bytes is not None for f in files))
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class FileRunView(QObject):
    """Colours file ports by what a watched run wrote, and opens an output on double-click."""

    def __init__(
        self, bridge: EngineBridge, files: FileLayer, view: CanvasView, watcher: RunWatcher
    ) -> None:
        super().__init__(view)
        self.bridge = bridge
        self.files = files
        self.view = view
        self.watcher = watcher
        self.exists: dict[tuple[str, str], bool] = {}
        self.written: dict[tuple[str, str], bool] = {}  # copied to batch output destinations
        self.dialog: OutputDialog | None = None
        self.ask_save_path: Callable[[str], str] = self._ask_save_path
        self.saved: list[str] = []  # where the last Save as… copied to
        self._batch_id: int | None = None
        watcher.changed.connect(self.refresh)
        view.viewport().installEventFilter(self)
        view.document.subscribe(self._on_document_event)

    def _on_document_event(self, event: DocumentEvent) -> None:
        """Ports are made again on edits: colour them again; another DAG has no run yet."""
        if isinstance(event, DocumentReset):
            self.exists, self.written = {}, {}
        elif self.exists or self.written:
            self._paint()

    def refresh(self) -> None:
        """Read which output files the watched batch has, then colour the ports."""
        batch_id = self.watcher.batch_id
        if batch_id is None:
            self.exists, self.written = {}, {}
            self._paint()
            return
        self.bridge.call(
            self.bridge.service.batch_files(batch_id),
            lambda files: self._on_files(batch_id, files),
        )

    def _on_files(self, batch_id: int, files: list[StoredFile]) -> None:
        if batch_id != self.watcher.batch_id:
            return
        self._batch_id = batch_id
        names = self.view.document.names()
        self.exists = existing_outputs(files, names)
        self.written = existing_outputs(files, names, kept=False)
        self._paint()

    def _paint(self) -> None:
        """Set each port's colour: outputs by their files, inputs by what they read."""
        document = self.view.document
        for key, port in self.files.ports.items():
            assert key.node is not None
            if key.side == "out":
                port.set_exists(self.exists.get((document.name(key.node), key.name)))
        for link in dag_files.file_links(document):
            port = self.files.ports.get(PortKey(link.target, "in", link.input))
            if port is not None and link.source is not None:
                port.set_exists(self.exists.get((document.name(link.source), link.output)))
        targets = dag_files.batch_outputs(document)
        for key, item in self.files.file_nodes.items():
            if key.side != "out" or int(key.name) >= len(targets):
                continue
            found = dag_files.resolve(document, str(targets[int(key.name)].get("from", "")))
            if found is not None and found[0] is not None:
                item.set_exists(self.written.get((document.name(found[0]), found[1])))

    # -- an output's dialog ---------------------------------------------------------------------

    def open_output(self, port: FilePortItem) -> None:
        """Show an output of the watched batch: where, how large, its first lines."""
        batch_id = self.watcher.batch_id
        if batch_id is None or port.key.node is None:
            return
        job = self.view.document.name(port.key.node)
        ref = f"{job}.{port.key.name}"

        def got(files: list[StoredFile]) -> None:
            chosen = [
                f
                for f in files
                if _node_name(f.job, {job}) == job
                and f.kept
                and f.name.split(".", 1)[0] == port.key.name
            ]
            if len(chosen) == 1 and chosen[0].size_bytes is not None:
                self.bridge.call(
                    self.bridge.service.output_preview(chosen[0].where),
                    lambda text: self._show(batch_id, ref, chosen, text),
                )
            else:
                self._show(batch_id, ref, chosen, None)

        self.bridge.call(self.bridge.service.batch_files(batch_id), got)

    def _show(self, batch_id: int, ref: str, files: list[StoredFile], preview: str | None) -> None:
        if self.dialog is not None:
            self.dialog.close()
        dialog = OutputDialog(ref, files, preview, self.view.window())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.save_button.clicked.connect(lambda: self.save_as(batch_id, ref))
        dialog.destroyed.connect(lambda: setattr(self, "dialog", None))
        self.dialog = dialog
        dialog.show()

    def save_as(self, batch_id: int, ref: str) -> None:
        """Ask where, then copy the output there (through the engine)."""
        dest = self.ask_save_path(ref)
        if dest:
            self.bridge.call(
                self.bridge.service.save_output(batch_id, ref, dest),
                lambda paths: self.saved.extend(str(p) for p in paths),
            )

    def _ask_save_path(self, ref: str) -> str:
        path, _ = QFileDialog.getSaveFileName(self.view.window(), f"Save {ref} as", ref)
        return path

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.MouseButtonDblClick
            and isinstance(event, QMouseEvent)
            and self.watcher.batch_id is not None
        ):
            item = self.files.item_at(self.view.mapToScene(event.position().toPoint()))
            if isinstance(item, FilePortItem) and item.key.side == "out":
                self.open_output(item)
                return True
        return False
