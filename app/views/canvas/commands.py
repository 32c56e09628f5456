"""Undo commands of the canvas: one per user action; each changes the document, never items."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from PySide6.QtGui import QUndoCommand

from app.models.dag_document import DagDocument
from app.models.dag_parts import Edge, Fragment, NodeId, Position

SET_FIELD_COMMAND_ID = 1  # commands of one field edit merge (typing is one undo step)


def _jobs(n: int) -> str:
    return f"{n} job{'s' if n != 1 else ''}"


class AddNodeCommand(QUndoCommand):
    """Add one job (dropped from the palette)."""

    def __init__(
        self, document: DagDocument, fields: Mapping[str, Any], position: Position
    ) -> None:
        super().__init__(f"Add {fields.get('name', 'job')}")
        self.document = document
        self.fields = copy.deepcopy(dict(fields))
        self.position = position
        self.node_id: NodeId | None = None  # known after the first redo, kept for the next

    def redo(self) -> None:
        fields = copy.deepcopy(self.fields)
        self.node_id = self.document.add_node(fields, self.position, node_id=self.node_id)

    def undo(self) -> None:
        assert self.node_id is not None
        self.document.remove_nodes([self.node_id])


class RemoveNodesCommand(QUndoCommand):
    """Delete jobs with their dependencies, and other selected dependencies."""

    def __init__(
        self, document: DagDocument, node_ids: Iterable[NodeId], edges: Iterable[Edge] = ()
    ) -> None:
        self.node_ids = list(node_ids)
        self.edges = list(edges)
        n_edges = len(self.edges)
        what = _jobs(len(self.node_ids)) if self.node_ids else ""
        if n_edges:
            what += (
                " and " if what else ""
            ) + f"{n_edges} dependenc{'ies' if n_edges > 1 else 'y'}"
        super().__init__(f"Delete {what}")
        self.document = document
        self.removed = Fragment()

    def redo(self) -> None:
        self.removed = self.document.remove_nodes(self.node_ids, edges=self.edges)

    def undo(self) -> None:
        self.document.insert(self.removed, owned=True)


class MoveNodesCommand(QUndoCommand):
    """Move jobs (one drag is one command)."""

    def __init__(
        self,
        document: DagDocument,
        old: Mapping[NodeId, Position],
        new: Mapping[NodeId, Position],
        text: str = "",
    ) -> None:
        super().__init__(text or f"Move {_jobs(len(new))}")
        self.document = document
        self.old = dict(old)
        self.new = dict(new)

    def redo(self) -> None:
        self.document.move_nodes(self.new)

    def undo(self) -> None:
        self.document.move_nodes(self.old)


class LayoutCommand(MoveNodesCommand):
    """Lay every job out anew, in layers from left to right."""

    def __init__(self, document: DagDocument) -> None:
        super().__init__(document, document.positions, document.layered_positions(), "Auto-layout")


class AddEdgeCommand(QUndoCommand):
    """Add a dependency parent → child (checked before it is pushed)."""

    def __init__(self, document: DagDocument, parent: NodeId, child: NodeId) -> None:
        super().__init__(f"Connect {document.name(parent)} → {document.name(child)}")
        self.document = document
        self.edge = (parent, child)

    def redo(self) -> None:
        reason = self.document.add_edge(*self.edge)
        if reason is not None:
            raise ValueError(f"the edge was checked before it was pushed, yet: {reason}")

    def undo(self) -> None:
        self.document.remove_edge(*self.edge)


class SetFieldCommand(QUndoCommand):
    """Set one field of one job; commands with the same `edit_key` merge into one."""

    def __init__(
        self,
        document: DagDocument,
        node_id: NodeId,
        field: str,
        value: object,
        *,
        edit_key: object = None,
    ) -> None:
        super().__init__(f"Set {field} of {document.name(node_id) or 'a job'}")
        self.document = document
        self.node_id = node_id
        self.field = field
        self.old = copy.deepcopy(document.fields(node_id).get(field))
        self.new = value
        self.edit_key = edit_key

    def id(self) -> int:
        return SET_FIELD_COMMAND_ID if self.edit_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not (
            isinstance(other, SetFieldCommand)
            and other.edit_key == self.edit_key
            and (other.node_id, other.field) == (self.node_id, self.field)
        ):
            return False
        self.new = other.new
        self.setObsolete(self.new == self.old)  # typed back to where it was: no step at all
        return True

    def redo(self) -> None:
        self.document.set_field(self.node_id, self.field, copy.deepcopy(self.new))

    def undo(self) -> None:
        self.document.set_field(self.node_id, self.field, copy.deepcopy(self.old))


class PasteCommand(QUndoCommand):
    """Insert copies of jobs (a paste or a duplicate), with fresh ids and unused names."""

    def __init__(self, document: DagDocument, fragment: Fragment, text: str = "Paste") -> None:
        super().__init__(f"{text} {_jobs(len(fragment.nodes))}")
        self.document = document
        self.fragment = fragment

    @property
    def node_ids(self) -> tuple[NodeId, ...]:
        return self.fragment.node_ids

    def redo(self) -> None:
        self.document.insert(self.fragment)

    def undo(self) -> None:
        self.document.remove_nodes(self.fragment.node_ids)
