"""The plain values of a DAG document: ids, pieces of a graph, and the events it emits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NodeId = int
Edge = tuple[NodeId, NodeId]  # (parent, child)
Position = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class NodesAdded:
    """Nodes were added (their edges follow in an EdgesAdded)."""

    node_ids: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class NodesRemoved:
    """Nodes were removed (their edges went first, in an EdgesRemoved)."""

    node_ids: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class NodeChanged:
    """One field of one node changed (or was removed)."""

    node_id: NodeId
    field: str


@dataclass(frozen=True, slots=True)
class NodesMoved:
    """Nodes got new positions."""

    node_ids: tuple[NodeId, ...]


@dataclass(frozen=True, slots=True)
class EdgesAdded:
    """Edges (parent, child) were added."""

    edges: tuple[Edge, ...]


@dataclass(frozen=True, slots=True)
class EdgesRemoved:
    """Edges (parent, child) were removed."""

    edges: tuple[Edge, ...]


@dataclass(frozen=True, slots=True)
class BatchFieldChanged:
    """A batch-level field (name, billing_project, attributes …) changed."""

    field: str


@dataclass(frozen=True, slots=True)
class DocumentReset:
    """Everything changed: a new or opened document replaced the old one."""


DocumentEvent = (
    NodesAdded
    | NodesRemoved
    | NodeChanged
    | NodesMoved
    | EdgesAdded
    | EdgesRemoved
    | BatchFieldChanged
    | DocumentReset
)
Listener = Callable[[DocumentEvent], None]


# ---------------------------------------------------------------------------------------------
# Pieces of a document


@dataclass(frozen=True, slots=True)
class NodeData:
    """One node as plain values: its job fields (without depends_on) and position."""

    node_id: NodeId
    fields: dict[str, Any]
    position: Position
    index: int | None = None  # where it was in file order, when it was removed


@dataclass(frozen=True, slots=True)
class Fragment:
    """Some nodes and edges: what a removal takes away, what a paste puts in."""

    nodes: tuple[NodeData, ...] = ()
    edges: tuple[Edge, ...] = ()
    # for a removal: where each edge's parent was among its child's dependencies
    edge_slots: tuple[int, ...] | None = None

    @property
    def node_ids(self) -> tuple[NodeId, ...]:
        return tuple(node.node_id for node in self.nodes)
