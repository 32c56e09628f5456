"""The files part of the property panel: a job's inputs and outputs in a table, added,
removed and renamed there, each edit checked by the file model's validation and committed as
one undo step (a rename of an output follows every reference to it)."""

from __future__ import annotations

import yaml
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models import dag_files
from app.models.dag_document import DagDocument
from app.models.dag_parts import DocumentEvent, NodeId
from app.models.files import parse_job_outputs
from app.views.canvas import file_commands as fc
from app.views.canvas.commands import SetFieldCommand

KIND, NAME, FILE = range(3)
INVALID_BACKGROUND = "#ffcdd2"


def shape_text(shape: object) -> str:
    """An output's shape as shown: empty (a plain file), `.ext`, or a group in YAML."""
    if shape is None:
        return ""
    if isinstance(shape, str):
        return shape
    text = yaml.safe_dump(shape, default_flow_style=True, width=10_000)
    return text.removesuffix("\n...\n").strip()


class FilesEditor(QWidget):
    """Lists and edits the inputs and outputs of one job."""

    def __init__(
        self, document: DagDocument, undo_stack: QUndoStack, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.document = document
        self.undo_stack = undo_stack
        self.node_id: NodeId | None = None
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["", "Name", "Reads / file"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(KIND, 56)
        self.table.setMinimumHeight(130)  # a few rows without scrolling
        self.table.setToolTip(
            "Inputs read a batch input or <job>.<output>; outputs are a plain file, "
            "an extension like .bam, or a group {member: '{root}.ext'}"
        )
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #c62828;")
        self.add_input_button = QPushButton("+ Input")
        self.add_output_button = QPushButton("+ Output")
        self.remove_button = QPushButton("Remove")
        self.add_input_button.clicked.connect(self.add_input)
        self.add_output_button.clicked.connect(self.add_output)
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        for button in (self.add_input_button, self.add_output_button, self.remove_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Files</b>"))
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.problem_label)
        self._loading = False
        self.table.itemChanged.connect(self._on_item_changed)
        self._unsubscribe = document.subscribe(self._on_document_event)
        self.show_node(None)

    def detach(self) -> None:
        self._unsubscribe()

    # -- showing --------------------------------------------------------------------------------

    def show_node(self, node_id: NodeId | None) -> None:
        """List this job's files (None: nothing)."""
        self.node_id = node_id if node_id in self.document else None
        for widget in (self.table, self.add_input_button, self.add_output_button):
            widget.setEnabled(self.node_id is not None)
        self.remove_button.setEnabled(self.node_id is not None)
        self._fill()

    def _rows(self) -> list[tuple[str, str, str]]:
        if self.node_id is None:
            return []
        fields = self.document.fields(self.node_id)
        rows = [("input", name, ref) for name, ref in dag_files.job_inputs(fields).items()]
        rows += [
            ("output", name, shape_text(shape))
            for name, shape in dag_files.job_outputs(fields).items()
        ]
        return rows

    def _fill(self) -> None:
        self._loading = True
        try:
            rows = self._rows()
            self.table.setRowCount(len(rows))
            for row, (kind, name, file) in enumerate(rows):
                kind_item = QTableWidgetItem(kind)
                kind_item.setFlags(kind_item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(row, KIND, kind_item)
                for column, text in ((NAME, name), (FILE, file)):
                    item = QTableWidgetItem(text)
                    item.setData(Qt.ItemDataRole.UserRole, text)  # the value in the document
                    self.table.setItem(row, column, item)
        finally:
            self._loading = False
        self.problem_label.setText("")

    def _on_document_event(self, event: DocumentEvent) -> None:
        if self.node_id is not None and self.node_id not in self.document:
            self.show_node(None)
        elif not self._loading:
            self._fill()

    # -- editing --------------------------------------------------------------------------------

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._loading or self.node_id is None:
            return
        row = item.row()
        kind = self.table.item(row, KIND).text()  # type: ignore[union-attr]
        name_item, file_item = self.table.item(row, NAME), self.table.item(row, FILE)
        assert name_item is not None and file_item is not None
        old_name = name_item.data(Qt.ItemDataRole.UserRole)
        command, problem = self._command(kind, old_name, name_item.text(), file_item.text())
        if problem is not None:
            self._loading = True  # marking the cell is no edit
            try:
                item.setBackground(QBrush(QColor(INVALID_BACKGROUND)))
                item.setToolTip(problem)
            finally:
                self._loading = False
            self.problem_label.setText(f"{kind} {old_name}: {problem}")
            return
        if command is not None:
            self.undo_stack.push(command)
        self._fill()

    def _command(
        self, kind: str, old: str, name: str, file: str
    ) -> tuple[QUndoCommand | None, str | None]:
        """The command for an edited row, or why the edit is refused."""
        assert self.node_id is not None
        node, document = self.node_id, self.document
        fields = document.fields(node)
        if name != old:
            problem = dag_files.check_file_name(fields, name, old=old)
            if problem is not None:
                return None, problem
            if kind == "input":
                return fc.rename_input(document, node, old, name), None
            return fc.rename_output(document, node, old, name), None
        if kind == "input":
            ref = file.strip()
            if dag_files.resolve(document, ref) is None:
                return None, f"{ref!r} names no batch input or <job>.<output> of this DAG"
            inputs = dag_files.job_inputs(fields)
            if inputs.get(name) == ref:
                return None, None
            return SetFieldCommand(document, node, "inputs", {**inputs, name: ref}), None
        try:
            shape = yaml.safe_load(file) if file.strip() else None
            parse_job_outputs({name: shape})
        except (yaml.YAMLError, ValueError) as exc:
            return None, str(exc).splitlines()[0]
        outputs = dag_files.job_outputs(fields)
        if outputs.get(name) == shape:
            return None, None
        return SetFieldCommand(document, node, "outputs", {**outputs, name: shape}), None

    def add_input(self) -> None:
        """A new input, reading the first batch input (or nothing yet: validation says so)."""
        if self.node_id is None:
            return
        fields = self.document.fields(self.node_id)
        first = next(iter(dag_files.batch_inputs(self.document)), "")
        name = dag_files.free_name(
            [*dag_files.job_inputs(fields), *dag_files.job_outputs(fields)], first or "input"
        )
        value = {**dag_files.job_inputs(fields), name: first}
        command = SetFieldCommand(self.document, self.node_id, "inputs", value)
        command.setText(f"Add input {name} to {self.document.name(self.node_id)}")
        self.undo_stack.push(command)

    def add_output(self) -> None:
        """A new output: a plain file named `out` (or `out_2` …)."""
        if self.node_id is None:
            return
        fields = self.document.fields(self.node_id)
        taken = [*dag_files.job_inputs(fields), *dag_files.job_outputs(fields)]
        name = dag_files.free_name(taken, "out")
        self.undo_stack.push(fc.add_output(self.document, self.node_id, name))

    def remove_selected(self) -> None:
        """Remove the selected row's input or output."""
        row = self.table.currentRow()
        if self.node_id is None or row < 0:
            return
        kind_item, name_item = self.table.item(row, KIND), self.table.item(row, NAME)
        assert kind_item is not None and name_item is not None
        name = name_item.data(Qt.ItemDataRole.UserRole)
        if kind_item.text() == "input":
            self.undo_stack.push(fc.remove_input(self.document, self.node_id, name))
        else:
            self.undo_stack.push(fc.remove_output(self.document, self.node_id, name))
