"""The DAG being edited on the canvas: jobs as plain data, positions, edges, and events.

Qt-free: the canvas scene mirrors a document by listening to its events, and undo commands
change it through the operations here. Nodes are keyed by a stable id, so renaming a job keeps
its edges; names are written into `depends_on` only when the document becomes file data.
Reading and writing files is in `dag_document_io`.
"""

from __future__ import annotations

import copy
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.models import dag_document_io as io
from app.models.dag_files import file_edges, file_edges_by_index, reaches_through_files
from app.models.dag_parts import (
    BatchFieldChanged,
    DocumentEvent,
    DocumentReset,
    Edge,
    EdgesAdded,
    EdgesRemoved,
    Fragment,
    Listener,
    NodeChanged,
    NodeData,
    NodeId,
    NodesAdded,
    NodesMoved,
    NodesRemoved,
    Position,
)
from app.models.job_fields import JOB_PARSERS
from app.models.layout import CycleError, layered_layout
from app.models.spec import DagFileError, Problem, parse_dag, validate_job_field

CANVAS_SOURCE = "<canvas>"  # the source named in problems of a document that has no file yet

# Fresh nodes of each kind the palette offers, as job data of the file format.
NODE_TEMPLATES: dict[str, dict[str, Any]] = {
    "bash": {"name": "job", "command": "echo hello"},
    "container": {"name": "container", "image": "ubuntu:24.04", "command": "echo hello"},
    "scatter": {
        "name": "scatter",
        "scatter": {"sample": ["a", "b"]},
        "command": 'echo "$sample"',
    },
}


@dataclass(slots=True)
class _Graph:
    """The node and edge tables; swapped whole when a document is reset."""

    fields: dict[NodeId, dict[str, Any]] = field(default_factory=dict)  # in file order
    positions: dict[NodeId, Position] = field(default_factory=dict)
    parents: dict[NodeId, dict[NodeId, None]] = field(default_factory=dict)  # ordered sets
    children: dict[NodeId, dict[NodeId, None]] = field(default_factory=dict)


def check_job_field(field_name: str, value: object) -> str | None:
    """The problem with one job field's value, or None: the CLI's check, plus `scatter`."""
    if field_name == "scatter" and "scatter" not in JOB_PARSERS:
        return _check_scatter(value)  # until the file format knows scatter jobs
    return validate_job_field(field_name, value)


def _check_scatter(value: object) -> str | None:
    if not isinstance(value, dict) or len(value) != 1:
        return "expected a mapping of one variable to its values, like {sample: [a, b, c]}"
    ((name, values),) = value.items()
    if not isinstance(name, str) or not name:
        return f"the variable name must be a string, got {name!r}"
    if isinstance(values, list) and not values:
        return f"{name!r}: the list of values is empty"
    return None


def scatter_count(fields: Mapping[str, Any]) -> int | None:
    """How many jobs a scatter node stands for, when its values are listed; else None."""
    scatter = fields.get("scatter")
    if isinstance(scatter, dict) and len(scatter) == 1:
        (values,) = scatter.values()
        if isinstance(values, list):
            return len(values)
    return None


def node_kind(fields: Mapping[str, Any]) -> str:
    """The palette kind a node's fields make it: scatter, container or bash."""
    if fields.get("scatter") is not None:
        return "scatter"
    if fields.get("image"):
        return "container"
    return "bash"


def _layout(
    nodes: Iterable[NodeId], edges: list[Edge], file_made: list[Edge]
) -> dict[NodeId, Position]:
    """Layered positions by dependencies and file references; a cycle through files (shown by
    validation) leaves the files out of the ordering."""
    nodes = list(nodes)
    try:
        return layered_layout(nodes, list(dict.fromkeys([*edges, *file_made])))
    except CycleError:
        return layered_layout(nodes, edges)


def _index(node: NodeData) -> int:
    return node.index or 0


def _slot(edge_and_slot: tuple[Edge, int | None]) -> int:
    return -1 if edge_and_slot[1] is None else edge_and_slot[1]


# ---------------------------------------------------------------------------------------------
# The document


class DagDocument:
    """A job DAG under edit: batch fields, nodes with job fields and positions, edges."""

    def __init__(self) -> None:
        self.batch: dict[str, Any] = {}  # batch-level keys of the file but `jobs` and `layout`
        self.source = CANVAS_SOURCE  # the file's path once saved or opened
        self._graph = _Graph()
        self._next_id: NodeId = 1
        self._listeners: list[Listener] = []

    # -- listeners ------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every event; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: DocumentEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    # -- reading --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._graph.fields)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._graph.fields

    @property
    def node_ids(self) -> list[NodeId]:
        """Every node id, in file order."""
        return list(self._graph.fields)

    @property
    def edges(self) -> list[Edge]:
        """Every edge (parent, child), grouped by child in file order."""
        return [(p, c) for c, parents in self._graph.parents.items() for p in parents]

    def fields(self, node_id: NodeId) -> Mapping[str, Any]:
        """The job fields of a node (without depends_on); read only."""
        return self._graph.fields[node_id]

    def name(self, node_id: NodeId) -> str:
        """A node's name, or '' when it has none (or not a string)."""
        name = self._graph.fields[node_id].get("name")
        return name if isinstance(name, str) else ""

    def position(self, node_id: NodeId) -> Position:
        return self._graph.positions[node_id]

    @property
    def positions(self) -> Mapping[NodeId, Position]:
        """Every node's position; read only."""
        return self._graph.positions

    def parents(self, node_id: NodeId) -> list[NodeId]:
        return list(self._graph.parents[node_id])

    def children(self, node_id: NodeId) -> list[NodeId]:
        return list(self._graph.children[node_id])

    def has_edge(self, parent: NodeId, child: NodeId) -> bool:
        return parent in self._graph.parents.get(child, {})

    def node_named(self, name: str) -> NodeId | None:
        """The first node with this name, if any."""
        for node_id, fields in self._graph.fields.items():
            if fields.get("name") == name:
                return node_id
        return None

    def names(self) -> set[str]:
        """The names in use."""
        return {n for f in self._graph.fields.values() if isinstance(n := f.get("name"), str)}

    def unique_name(self, base: str, taken: set[str] | None = None) -> str:
        """`base`, or `base-2`, `base-3` … whichever is free; adds it to `taken` if given."""
        taken = self.names() if taken is None else taken
        stem = base.rsplit("-", 1)[0] if base.rsplit("-", 1)[-1].isdigit() else base
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{stem}-{k}"
        taken.add(name)
        return name

    def fragment(self, node_ids: Iterable[NodeId]) -> Fragment:
        """A copy of some nodes and the edges among them."""
        wanted = [n for n in dict.fromkeys(node_ids) if n in self._graph.fields]
        chosen = set(wanted)
        g = self._graph
        nodes = tuple(NodeData(n, copy.deepcopy(g.fields[n]), g.positions[n]) for n in wanted)
        edges = tuple((p, c) for c in wanted for p in g.parents[c] if p in chosen)
        return Fragment(nodes, edges)

    # -- edges ----------------------------------------------------------------------------------

    def check_edge(self, parent: NodeId, child: NodeId) -> str | None:
        """Why the edge parent → child cannot be added, or None when it can."""
        g = self._graph
        if parent not in g.fields or child not in g.fields:
            return "both ends of a dependency must be jobs of this DAG"
        if parent == child:
            return "a job cannot depend on itself"
        if parent in g.parents[child]:
            return f"{self._label(child)} already depends on {self._label(parent)}"
        path = self._path(child, parent)
        if path is not None:
            cycle = " → ".join(self._label(n) for n in [parent, *path])
            return f"that would make a cycle: {cycle}"
        if reaches_through_files(self, child, parent):
            after, before = self._label(parent), self._label(child)
            return f"that would make a cycle: {after} runs after {before} (through files)"
        return None

    def _path(self, start: NodeId, goal: NodeId) -> list[NodeId] | None:
        """The nodes of a path start → … → goal along edges, or None (breadth first)."""
        came_from: dict[NodeId, NodeId | None] = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if node == goal:
                path: list[NodeId] = []
                step: NodeId | None = node
                while step is not None:
                    path.append(step)
                    step = came_from[step]
                return path[::-1]
            for child in self._graph.children[node]:
                if child not in came_from:
                    came_from[child] = node
                    queue.append(child)
        return None

    def _label(self, node_id: NodeId) -> str:
        return self.name(node_id) or f"#{self.node_ids.index(node_id) + 1}"

    def add_edge(self, parent: NodeId, child: NodeId) -> str | None:
        """Add parent → child; refuse a cycle or a duplicate, returning the reason."""
        reason = self.check_edge(parent, child)
        if reason is None:
            self._graph.parents[child][parent] = None
            self._graph.children[parent][child] = None
            self._emit(EdgesAdded(((parent, child),)))
        return reason

    def remove_edge(self, parent: NodeId, child: NodeId) -> None:
        """Remove parent → child (it must exist)."""
        del self._graph.parents[child][parent]
        del self._graph.children[parent][child]
        self._emit(EdgesRemoved(((parent, child),)))

    # -- nodes ----------------------------------------------------------------------------------

    def add_node(
        self, fields: Mapping[str, Any], position: Position, *, node_id: NodeId | None = None
    ) -> NodeId:
        """Add a node with these job fields (no depends_on) at `position`; returns its id."""
        node_id = self._take_id(node_id)
        self._put_node(node_id, dict(fields), position)
        self._emit(NodesAdded((node_id,)))
        return node_id

    def insert(self, fragment: Fragment, *, owned: bool = False) -> None:
        """Put a fragment's nodes (their ids must be free) and edges in, back where they were
        when it came from `remove_nodes`; `owned`: take its field dicts, not copies."""
        for node in fragment.nodes:
            fields = node.fields if owned else copy.deepcopy(node.fields)
            self._put_node(self._take_id(node.node_id), fields, node.position)
        if any(node.index is not None for node in fragment.nodes):
            self._restore_order(fragment.nodes)
        self._emit(NodesAdded(fragment.node_ids))
        g = self._graph
        slots = fragment.edge_slots or (None,) * len(fragment.edges)
        for (parent, child), slot in sorted(zip(fragment.edges, slots, strict=True), key=_slot):
            g.children[parent][child] = None
            if slot is None or slot >= len(g.parents[child]):
                g.parents[child][parent] = None
            else:
                keys = list(g.parents[child])
                keys.insert(slot, parent)
                g.parents[child] = dict.fromkeys(keys)
        if fragment.edges:
            self._emit(EdgesAdded(fragment.edges))

    def _restore_order(self, nodes: tuple[NodeData, ...]) -> None:
        """Move re-inserted nodes from the end back to their places in file order."""
        g = self._graph
        placed = {node.node_id for node in nodes if node.index is not None}
        order = [n for n in g.fields if n not in placed]
        for node in sorted((n for n in nodes if n.index is not None), key=_index):
            order.insert(_index(node), node.node_id)
        g.fields = {n: g.fields[n] for n in order}

    def remove_nodes(self, node_ids: Iterable[NodeId], *, edges: Iterable[Edge] = ()) -> Fragment:
        """Remove nodes with their edges (and other `edges`); returns what was removed, which
        `insert` puts back as it was."""
        g = self._graph
        wanted = set(node_ids)
        indexed = [(k, n) for k, n in enumerate(g.fields) if n in wanted]
        gone = {n for _, n in indexed}
        lost = dict.fromkeys(e for e in edges if e[0] not in gone and e[1] not in gone)
        for _, n in indexed:
            lost.update(((p, n), None) for p in g.parents[n])
            lost.update(((n, c), None) for c in g.children[n])
        slots = tuple(list(g.parents[child]).index(parent) for parent, child in lost)
        fragment = Fragment(
            tuple(NodeData(n, g.fields[n], g.positions[n], k) for k, n in indexed),
            tuple(lost),
            slots,
        )
        for parent, child in fragment.edges:
            del g.parents[child][parent]
            del g.children[parent][child]
        if fragment.edges:
            self._emit(EdgesRemoved(fragment.edges))
        for _, n in indexed:
            del g.fields[n], g.positions[n], g.parents[n], g.children[n]
        if indexed:
            self._emit(NodesRemoved(tuple(n for _, n in indexed)))
        return fragment

    def copy_fragment(self, fragment: Fragment, offset: Position = (0.0, 0.0)) -> Fragment:
        """A copy of a fragment with fresh ids, names not in use, and positions moved by
        `offset`: what a paste or a duplicate inserts."""
        taken = self.names()
        new_ids: dict[NodeId, NodeId] = {}
        nodes = []
        for node in fragment.nodes:
            new_ids[node.node_id] = self._take_id(None)
            fields = copy.deepcopy(node.fields)
            if isinstance(name := fields.get("name"), str) and name:
                fields["name"] = self.unique_name(name, taken)
            x, y = node.position
            nodes.append(NodeData(new_ids[node.node_id], fields, (x + offset[0], y + offset[1])))
        edges = tuple((new_ids[p], new_ids[c]) for p, c in fragment.edges)
        return Fragment(tuple(nodes), edges)

    def set_field(self, node_id: NodeId, field_name: str, value: object) -> None:
        """Set one job field of a node; None removes the field (its default applies)."""
        if field_name == "depends_on":
            raise ValueError("dependencies are edges: use add_edge and remove_edge")
        fields = self._graph.fields[node_id]
        if value is None:
            fields.pop(field_name, None)
        else:
            fields[field_name] = value
        self._emit(NodeChanged(node_id, field_name))

    def move_nodes(self, positions: Mapping[NodeId, Position]) -> None:
        """Give nodes new positions."""
        self._graph.positions.update(positions)
        self._emit(NodesMoved(tuple(positions)))

    def set_batch_field(self, field_name: str, value: object) -> None:
        """Set a batch-level field (name, billing_project, attributes …); None removes it."""
        if field_name in ("jobs", "layout"):
            raise ValueError(f"{field_name!r} is not a batch field")
        if value is None:
            self.batch.pop(field_name, None)
        else:
            self.batch[field_name] = value
        self._emit(BatchFieldChanged(field_name))

    def _take_id(self, node_id: NodeId | None) -> NodeId:
        if node_id is None:
            node_id = self._next_id
        elif node_id in self._graph.fields:
            raise ValueError(f"node id {node_id} is in use")
        self._next_id = max(self._next_id, node_id + 1)
        return node_id

    def _put_node(self, node_id: NodeId, fields: dict[str, Any], position: Position) -> None:
        fields.pop("depends_on", None)
        g = self._graph
        g.fields[node_id] = fields
        g.positions[node_id] = position
        g.parents[node_id] = {}
        g.children[node_id] = {}

    # -- whole documents ------------------------------------------------------------------------

    def replace(self, other: DagDocument) -> None:
        """Take another document's contents (a New or an Open); listeners stay."""
        self.batch, self.source = other.batch, other.source
        self._graph, self._next_id = other._graph, other._next_id
        other.batch, other._graph = {}, _Graph()
        self._emit(DocumentReset())

    def validate(self) -> list[Problem]:
        """Every problem of the DAG, as the CLI would find them; never raises."""
        problems: list[Problem] = []
        checked: set[tuple[str, str]] = set()  # (job, field) with a problem already
        for k, (node_id, fields) in enumerate(self._graph.fields.items()):
            label = self.name(node_id) or f"#{k + 1}"
            for field_name, value in fields.items():
                message = check_job_field(field_name, value)
                if message is not None:
                    problems.append(Problem(self.source, message, job=label, field=field_name))
                    checked.add((label, field_name))
        try:
            parse_dag(self.to_data(layout=False, for_validation=True), source=self.source)
        except DagFileError as exc:
            problems += [p for p in exc.problems if (p.job, p.field) not in checked]
        return problems

    def layered_positions(self) -> dict[NodeId, Position]:
        """Where auto-layout puts every node (layered left to right)."""
        return _layout(self.node_ids, self.edges, file_edges(self))

    # -- files ----------------------------------------------------------------------------------

    def to_data(self, *, layout: bool = True, for_validation: bool = False) -> dict[str, Any]:
        """The DAG file data, with a `layout: {name: [x, y]}` key unless `layout` is false."""
        return io.to_data(self, layout=layout, for_validation=for_validation)

    def to_text(self, *, fmt: str = "yaml") -> str:
        """The DAG file text (YAML, or JSON when `fmt` is "json"), in a stable key order."""
        return io.dump_text(self.to_data(), fmt=fmt)

    @classmethod
    def from_data(
        cls, data: object, *, source: str = CANVAS_SOURCE, text: str | None = None
    ) -> DagDocument:
        """A document of DAG file data; nodes missing from its `layout` are laid out anew.

        Raises DagFileError for what a canvas cannot show (unknown or duplicate names behind
        dependencies, a cycle); other problems open and are found by `validate()`.
        """
        with io.cyclic_gc_paused():
            return cls._from_parts(io.read_parts(data, source=source, text=text), source)

    @classmethod
    def _from_parts(cls, parts: io.DagParts, source: str) -> DagDocument:
        document = cls()
        document.batch, document.source = parts.batch, source
        positions = parts.positions
        if any(p is None for p in positions):
            placed = _layout(range(len(parts.jobs)), parts.edges, file_edges_by_index(parts.jobs))
            positions = [placed[k] for k in range(len(parts.jobs))]
        nodes = tuple(
            NodeData(k + 1, fields, position or (0.0, 0.0))
            for k, (fields, position) in enumerate(zip(parts.jobs, positions, strict=True))
        )
        edges = tuple((parent + 1, child + 1) for parent, child in parts.edges)
        document.insert(Fragment(nodes, edges), owned=True)
        return document

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DagDocument:
        """Open a DAG file (YAML, or JSON by its suffix); raise DagFileError with lines."""
        with io.cyclic_gc_paused():
            data, text = io.read_text(path)
            return cls.from_data(data, source=os.fspath(path), text=text)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the DAG file whole (JSON when the suffix is .json); it becomes the source."""
        io.save_text(path, self.to_text(fmt=io.file_format(path)))
        self.source = os.fspath(path)
