"""Undo commands for files on the canvas: connect an output to a job, add, rename or remove
inputs and outputs, add batch inputs and batch outputs. Each is one step of the undo stack
and changes the document only through its field operations."""

from __future__ import annotations

import copy

from PySide6.QtGui import QUndoCommand

from app.models import dag_files
from app.models.dag_document import DagDocument
from app.models.dag_parts import NodeId
from app.views.canvas.commands import SetFieldCommand


class SetBatchFieldCommand(QUndoCommand):
    """Set one batch-level field (batch `inputs` or `outputs`); None removes it."""

    def __init__(
        self,
        document: DagDocument,
        field: str,
        value: object,
        text: str = "",
    ) -> None:
        super().__init__(text or f"Set batch {field}")
        self.document = document
        self.field = field
        self.old = copy.deepcopy(document.batch.get(field))
        self.new = copy.deepcopy(value)

    def redo(self) -> None:
        self.document.set_batch_field(self.field, copy.deepcopy(self.new))

    def undo(self) -> None:
        self.document.set_batch_field(self.field, copy.deepcopy(self.old))


class CompoundCommand(QUndoCommand):
    """Several changes as one step: redone in order, undone in reverse (plain Python parts,
    not Qt children, so Python owns every part)."""

    def __init__(self, text: str, parts: list[QUndoCommand]) -> None:
        super().__init__(text)
        self.parts = parts

    def redo(self) -> None:
        for part in self.parts:
            part.redo()

    def undo(self) -> None:
        for part in reversed(self.parts):
            part.undo()


def connect_file(
    document: DagDocument, source: NodeId | None, output: str, target: NodeId
) -> QUndoCommand:
    """Make `source`'s output (a batch input when None) an input of `target`: one step.
    Check it first with `dag_files.check_connect`."""
    ref = dag_files.reference(document, source, output)
    value = dag_files.with_input(document.fields(target), ref)
    command = SetFieldCommand(document, target, "inputs", value)
    command.setText(f"Connect {ref} → {document.name(target)}")
    return command


def remove_input(document: DagDocument, node_id: NodeId, name: str) -> QUndoCommand:
    """Remove one input of a job."""
    value = dag_files.without_input(document.fields(node_id), name)
    command = SetFieldCommand(document, node_id, "inputs", value)
    command.setText(f"Remove input {name} of {document.name(node_id)}")
    return command


def rename_input(document: DagDocument, node_id: NodeId, old: str, new: str) -> QUndoCommand:
    """Rename one input of a job (the command text must follow: `$old` becomes `$new`)."""
    inputs = dag_files.job_inputs(document.fields(node_id))
    value = {(new if k == old else k): ref for k, ref in inputs.items()}
    command = SetFieldCommand(document, node_id, "inputs", value)
    command.setText(f"Rename input {old} of {document.name(node_id)} to {new}")
    return command


def add_output(
    document: DagDocument, node_id: NodeId, name: str, shape: object = None
) -> QUndoCommand:
    """Declare one more output of a job (a plain file, `.ext` or a group)."""
    outputs = dag_files.job_outputs(document.fields(node_id))
    outputs[name] = copy.deepcopy(shape)
    command = SetFieldCommand(document, node_id, "outputs", outputs)
    command.setText(f"Add output {name} to {document.name(node_id)}")
    return command


def remove_output(document: DagDocument, node_id: NodeId, name: str) -> QUndoCommand:
    """Remove one output of a job (inputs reading it stay, and validation names them)."""
    outputs = dag_files.job_outputs(document.fields(node_id))
    outputs.pop(name, None)
    command = SetFieldCommand(document, node_id, "outputs", outputs or None)
    command.setText(f"Remove output {name} of {document.name(node_id)}")
    return command


def rename_output(document: DagDocument, node_id: NodeId, old: str, new: str) -> QUndoCommand:
    """Rename a job's output and every reference to it (job inputs, batch outputs): one step."""
    changes, targets = dag_files.renamed_output(document, node_id, old, new)
    parts: list[QUndoCommand] = [
        SetFieldCommand(document, changed, field, value) for changed, field, value in changes
    ]
    if targets != document.batch.get("outputs"):
        parts.append(SetBatchFieldCommand(document, "outputs", targets))
    return CompoundCommand(f"Rename output {old} of {document.name(node_id)} to {new}", parts)


def add_batch_input(document: DagDocument, location: str, name: str | None = None) -> QUndoCommand:
    """Add a batch input reading `location` (named after its file unless `name` is given)."""
    inputs = dag_files.batch_inputs(document)
    name = name or dag_files.free_name(inputs, dag_files.name_for_location(location))
    inputs[name] = location
    return SetBatchFieldCommand(document, "inputs", inputs, f"Add input {name}")


def write_to(document: DagDocument, source: NodeId | None, output: str, to: str) -> QUndoCommand:
    """Add a batch output copying a job's output (or a batch input) to `to`."""
    ref = dag_files.reference(document, source, output)
    targets = [*dag_files.batch_outputs(document), {"from": ref, "to": to}]
    return SetBatchFieldCommand(document, "outputs", targets, f"Write {ref} to {to}")


def remove_batch_output(document: DagDocument, index: int) -> QUndoCommand:
    """Remove one batch output."""
    targets = dag_files.batch_outputs(document)
    gone = targets.pop(index)
    return SetBatchFieldCommand(
        document, "outputs", targets or None, f"Stop writing {gone.get('from')}"
    )


class RenameJobCommand(SetFieldCommand):
    """Rename a job; references to its outputs (other jobs' inputs, batch outputs) follow.
    Merges like any typing in the name field: the references follow the last name."""

    def __init__(
        self,
        document: DagDocument,
        node_id: NodeId,
        field: str,
        value: object,
        *,
        edit_key: object = None,
    ) -> None:
        if field != "name":
            raise ValueError(f"a rename sets the name, not {field!r}")
        super().__init__(document, node_id, field, value, edit_key=edit_key)
        self.inputs_before = {
            n: copy.deepcopy(document.fields(n).get("inputs")) for n in document.node_ids
        }
        self.outputs_before = copy.deepcopy(document.batch.get("outputs"))
        self.changed: list[NodeId] = []

    def redo(self) -> None:
        document = self.document
        old, new = self.old, self.new
        if isinstance(old, str) and isinstance(new, str) and old and new != old:
            self._restore()  # from the references as they were before the first keystroke
            changes, targets = dag_files.references_renamed(document, self.node_id, old, new)
            for node, field, value in changes:
                document.set_field(node, field, value)
            self.changed = [node for node, _, _ in changes]
            if targets != document.batch.get("outputs"):
                document.set_batch_field("outputs", targets)
        super().redo()

    def mergeWith(self, other: QUndoCommand) -> bool:
        changed = other.changed if isinstance(other, RenameJobCommand) else []
        merged = super().mergeWith(other)
        if merged:
            self.changed = list(dict.fromkeys([*self.changed, *changed]))
        return merged

    def undo(self) -> None:
        super().undo()
        self._restore()

    def _restore(self) -> None:
        document = self.document
        for node in self.changed:
            if node in document:
                document.set_field(node, "inputs", copy.deepcopy(self.inputs_before.get(node)))
        self.changed = []
        if document.batch.get("outputs") != self.outputs_before:
            document.set_batch_field("outputs", copy.deepcopy(self.outputs_before))
