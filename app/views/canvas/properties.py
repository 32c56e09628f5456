"""The property panel: edits the selected job's fields, checked as you type.

Each field is checked with the CLI's validation on every keystroke and marked (red border,
the message as tooltip and below the form) when invalid. A valid value is committed as a
SetFieldCommand after a short pause or when the field loses focus; the commands of one edit of
one field merge, so typing a word is one undo step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtGui import QFontDatabase, QUndoStack
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.models.dag_document import DagDocument, check_job_field
from app.models.dag_parts import DocumentEvent, DocumentReset, NodeChanged, NodeId, NodesRemoved
from app.views.canvas.commands import SetFieldCommand
from app.views.canvas.file_commands import RenameJobCommand
from app.views.canvas.file_properties import FilesEditor

COMMIT_AFTER_MS = 600  # a pause in typing this long commits a valid value
INVALID_STYLE = "border: 2px solid #e53935;"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One editable job field: its key, its label, how it is typed, a hint."""

    name: str
    label: str
    kind: str  # line, code, scalar, env, list, yaml, check
    tip: str = ""


PROPERTY_FIELDS = (
    FieldSpec("name", "Name", "line", "Letters, digits, '_', '.' and '-'"),
    FieldSpec("command", "Command", "code", "A bash script"),
    FieldSpec("image", "Image", "line", "A container image; empty: run on the worker itself"),
    FieldSpec("cpu", "CPU", "scalar", "Cores: 0.25, 0.5, 1, 2 … 256, or millicores like 500m"),
    FieldSpec("memory", "Memory", "scalar", "lowmem, standard, highmem or a size like 2Gi"),
    FieldSpec("storage", "Storage", "scalar", "A size like 10Gi"),
    FieldSpec("timeout", "Timeout", "scalar", "Seconds, or a duration like 90s, 2m, 1h30m"),
    FieldSpec("env", "Environment", "env", "One NAME=value per line"),
    FieldSpec("n_max_attempts", "Max attempts", "scalar", "How many times a job may run"),
    FieldSpec("retry", "Retry", "yaml", "Like {on: [failure, oom], max: 3, memory_factor: 2}"),
    FieldSpec("always_run", "Always run", "check", "Run even when a parent failed"),
    FieldSpec("regions", "Regions", "list", "Region names, separated by commas"),
    FieldSpec("pool", "Pool", "line", "Empty: the default pool"),
    FieldSpec("scatter", "Scatter", "yaml", "Like {sample: [a, b, c]}: one job per value"),
)
REQUIRED_FIELDS = ("name", "command")  # empty is a problem, not "remove the field"


# ---------------------------------------------------------------------------------------------
# Text ⇄ values


def value_to_text(kind: str, value: Any) -> str:
    """How a field's value is shown in its editor."""
    if value is None:
        return ""
    if kind == "env" and isinstance(value, dict):
        return "\n".join(f"{key}={item}" for key, item in value.items())
    if kind == "list" and isinstance(value, list):
        return ", ".join(str(item) for item in value)
    if kind in ("yaml", "env", "list") or isinstance(value, list | dict):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True)
        return text.removesuffix("\n...\n").strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def text_to_value(spec: FieldSpec, text: str) -> tuple[Any, str | None]:
    """The value an editor's text stands for (None: leave the field out), or a problem."""
    if not text.strip():
        return ("" if spec.name in REQUIRED_FIELDS else None), None
    if spec.kind in ("line", "code"):
        return text, None
    if spec.kind == "list":
        return [item.strip() for item in text.split(",") if item.strip()], None
    if spec.kind == "env":
        env: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            key, equals, item = line.partition("=")
            if not equals:
                return None, f"line {number}: expected NAME=value, got {line.strip()!r}"
            env[key.strip()] = item
        return env, None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if spec.kind == "scalar":
            return text.strip(), None  # not YAML: let the field's check say what is wrong
        return None, f"invalid YAML: {getattr(exc, 'problem', None) or exc}"
    if spec.kind == "scalar" and isinstance(value, list | dict):
        return text.strip(), None
    return value, None


# ---------------------------------------------------------------------------------------------
# The panel


class PropertiesPanel(QWidget):
    """Edits the fields of one job (the single selected node)."""

    def __init__(
        self, document: DagDocument, undo_stack: QUndoStack, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.document = document
        self.undo_stack = undo_stack
        self.node_id: NodeId | None = None
        self.specs = {spec.name: spec for spec in PROPERTY_FIELDS}
        self.editors: dict[str, QLineEdit | QPlainTextEdit | QCheckBox] = {}
        self.problems: dict[str, str] = {}  # field → message, for the fields marked invalid
        self.heading = QLabel()
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #c62828;")
        self._loading = False
        self._edit_key = object()  # commands with the same key merge into one undo step
        self._pending: set[str] = set()
        self._timer = QTimer(self, singleShot=True, interval=COMMIT_AFTER_MS)
        self._timer.timeout.connect(self.commit)
        self._focus_filter = _FocusOutFilter(self._finish_edit, self)
        form = QFormLayout()
        for spec in PROPERTY_FIELDS:
            editor = self._make_editor(spec)
            editor.setToolTip(spec.tip)
            self.editors[spec.name] = editor
            form.addRow(spec.label if spec.kind != "check" else "", editor)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addLayout(form)
        layout.addWidget(self.problem_label)
        self.files = FilesEditor(document, undo_stack)  # inputs and outputs
        layout.addWidget(self.files)
        layout.addStretch(1)
        self._unsubscribe = document.subscribe(self._on_document_event)
        self.show_node(None)

    def _make_editor(self, spec: FieldSpec) -> QLineEdit | QPlainTextEdit | QCheckBox:
        name = spec.name
        if spec.kind == "check":
            box = QCheckBox(spec.label)
            box.toggled.connect(lambda _checked: self._on_edited(name, merge=False))
            return box
        if spec.kind in ("code", "env"):
            text = QPlainTextEdit()
            text.setTabChangesFocus(spec.kind == "env")
            text.setFixedHeight(120 if spec.kind == "code" else 70)
            if spec.kind == "code":
                text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
                text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            text.textChanged.connect(lambda: self._on_edited(name))
            text.installEventFilter(self._focus_filter)
            return text
        line = QLineEdit()
        line.textEdited.connect(lambda _text: self._on_edited(name))
        line.editingFinished.connect(self._finish_edit)
        return line

    def detach(self) -> None:
        """Stop following the document (the editor is closing)."""
        self._unsubscribe()
        self.files.detach()

    # -- showing a node -------------------------------------------------------------------------

    def show_node(self, node_id: NodeId | None) -> None:
        """Edit this job's fields (None: nothing to edit)."""
        if node_id != self.node_id:
            self.commit()
        self.node_id = node_id if node_id in self.document else None
        self.files.show_node(self.node_id)
        self._edit_key = object()
        shown = self.node_id is not None
        for editor in self.editors.values():
            editor.setEnabled(shown)
        if self.node_id is None:
            self.heading.setText("Select one job to edit it.")
            self._load_all({})
        else:
            self.heading.setText(f"<b>{self.document.name(self.node_id) or 'Job'}</b>")
            self._load_all(self.document.fields(self.node_id))

    def _load_all(self, fields: Any) -> None:
        self._pending.clear()
        for name in self.editors:
            self._load(name, fields.get(name))
            self._mark(name, self.value_of(name)[1] if fields else None)  # as opened

    def _load(self, name: str, value: Any) -> None:
        """Show a value in its editor, without treating it as an edit."""
        editor, spec = self.editors[name], self.specs[name]
        self._loading = True
        try:
            if isinstance(editor, QCheckBox):
                editor.setChecked(value is True)
            elif isinstance(editor, QPlainTextEdit):
                editor.setPlainText(value_to_text(spec.kind, value))
            else:
                editor.setText(value_to_text(spec.kind, value))
        finally:
            self._loading = False

    def _on_document_event(self, event: DocumentEvent) -> None:
        match event:
            case NodeChanged(node_id=node_id, field=name) if node_id == self.node_id:
                current = self.document.fields(node_id).get(name)
                if name in self.editors and self.value_of(name) != (current, None):
                    self._load(name, current)  # an undo, not this panel's own edit
                    self._mark(name, None)
                if name == "name":
                    self.heading.setText(f"<b>{self.document.name(node_id) or 'Job'}</b>")
            case NodesRemoved(node_ids=ids) if self.node_id in ids:
                self.show_node(None)
            case DocumentReset():
                self.node_id = None
                self.show_node(None)

    # -- editing --------------------------------------------------------------------------------

    def text_of(self, name: str) -> str:
        editor = self.editors[name]
        if isinstance(editor, QCheckBox):
            return "true" if editor.isChecked() else ""
        if isinstance(editor, QPlainTextEdit):
            return editor.toPlainText()
        return editor.text()

    def value_of(self, name: str) -> tuple[Any, str | None]:
        """The value an editor holds now, and its problem (None when it is valid)."""
        spec = self.specs[name]
        editor = self.editors[name]
        if isinstance(editor, QCheckBox):
            return (True if editor.isChecked() else None), None
        value, problem = text_to_value(spec, self.text_of(name))
        if problem is None and value is not None:
            problem = check_job_field(name, value)
        if problem is None and name == "name" and self.node_id is not None:
            other = self.document.node_named(value)
            if other is not None and other != self.node_id:
                problem = f"another job is named {value!r}"
        return value, problem

    def _on_edited(self, name: str, *, merge: bool = True) -> None:
        if self._loading or self.node_id is None:
            return
        _value, problem = self.value_of(name)
        self._mark(name, problem)
        if problem is not None:
            self._pending.discard(name)
            return
        self._pending.add(name)
        if merge:
            self._timer.start()
        else:
            self._finish_edit()

    def commit(self) -> None:
        """Turn the valid edits not yet in the document into commands."""
        self._timer.stop()
        pending, self._pending = self._pending, set()
        if self.node_id is None or self.node_id not in self.document:
            return  # the job was deleted meanwhile: its unsaved edits go with it
        for name in sorted(pending):
            value, problem = self.value_of(name)
            if problem is None and value != self.document.fields(self.node_id).get(name):
                kind = RenameJobCommand if name == "name" else SetFieldCommand
                command = kind(self.document, self.node_id, name, value, edit_key=self._edit_key)
                self.undo_stack.push(command)

    def _finish_edit(self) -> None:
        """The field lost focus (or Enter): commit now; the next typing is a new step."""
        self.commit()
        self._edit_key = object()

    def _mark(self, name: str, problem: str | None) -> None:
        editor = self.editors[name]
        if problem is None:
            if self.problems.pop(name, None) is not None:
                editor.setStyleSheet("")
                editor.setToolTip(self.specs[name].tip)
        else:
            self.problems[name] = problem
            editor.setStyleSheet(INVALID_STYLE)
            editor.setToolTip(problem)
        self.problem_label.setText(
            "\n".join(f"{self.specs[n].label}: {m}" for n, m in self.problems.items())
        )


class _FocusOutFilter(QObject):
    """Calls back when a watched editor loses focus."""

    def __init__(self, on_focus_out: Callable[[], None], parent: QObject) -> None:
        super().__init__(parent)
        self._on_focus_out = on_focus_out

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.FocusOut:
            self._on_focus_out()
        return False
