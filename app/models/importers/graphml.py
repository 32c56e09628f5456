"""Import a GraphML graph (yEd, Gephi, networkx …), read by networkx.

A node's id is its job's name unless it has a `name` attribute; `data` keys named like job
fields set them, other keys become job attributes, and an edge source → target makes the target
depend on the source. Lines are found by a second pass over the XML, and only for problems.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
import xml.parsers.expat
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from app.models.dag_text import DataPath
from app.models.importers.graph import GraphEdge, GraphNode, dag_from_graph
from app.models.importers.result import ImportedDag
from app.models.spec import DagFileError, Problem

_NS = "{http://graphml.graphdrawing.org/xmlns}"


def import_graphml(path: str | os.PathLike[str]) -> ImportedDag:
    """Read a directed GraphML graph and return its validated DAG; raise DagFileError."""
    import networkx as nx  # only here: importing it takes a while

    source = os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror or exc}"
        raise DagFileError([Problem(source, message)]) from exc
    try:
        graph = nx.parse_graphml(data, node_type=str)
    except ElementTree.ParseError as exc:
        line = exc.position[0]
        raise DagFileError([Problem(source, f"invalid XML: {exc}", line)]) from exc
    except (nx.NetworkXError, ValueError, KeyError) as exc:
        message = f"invalid GraphML: {exc}"
        raise DagFileError([Problem(source, message, _graph_line(data))]) from exc
    if not graph.is_directed():
        message = 'the graph is undirected: write <graph edgedefault="directed">'
        raise DagFileError([Problem(source, message, _graph_line(data))])
    nodes = [GraphNode(str(node), dict(attrs)) for node, attrs in graph.nodes(data=True)]
    edges = [GraphEdge(str(u), str(v)) for u, v in graph.edges()]
    attributes = {key: value for key, value in graph.graph.items() if isinstance(key, str)}
    return dag_from_graph(
        name=attributes.get("name"),
        graph_attributes=attributes,
        nodes=nodes,
        edges=edges,
        source=source,
        kind="graphml",
        lines=_LineFinder(data, [node.node_id for node in nodes]).locate,
    )


def _graph_line(data: bytes) -> int | None:
    """The line of the <graph> element, where a problem of the whole graph is."""
    return _ElementLines(data).graph_line


class _ElementLines:
    """One expat pass over the file: the lines of nodes, their data and edges, by id."""

    def __init__(self, data: bytes) -> None:
        self.graph_line: int | None = None
        self.node_lines: dict[str, int] = {}
        self.data_lines: dict[tuple[str, str], int] = {}  # (node id, attribute name) → line
        self.edge_lines: dict[str, int] = {}  # target node id → its first edge's line
        self._key_names: dict[str, str] = {}  # key id → attr.name
        self._node: str | None = None
        parser = xml.parsers.expat.ParserCreate(namespace_separator="}")
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        self._parser = parser
        try:
            parser.Parse(data, True)
        except xml.parsers.expat.ExpatError:
            pass  # the lines found so far will do

    def _start(self, tag: str, attributes: dict[str, str]) -> None:
        line = self._parser.CurrentLineNumber
        name = tag.removeprefix(_NS[1:])
        if name == "key":
            self._key_names[attributes.get("id", "")] = attributes.get("attr.name", "")
        elif name == "graph" and self.graph_line is None:
            self.graph_line = line
        elif name == "node":
            self._node = attributes.get("id")
            if self._node is not None:
                self.node_lines.setdefault(self._node, line)
        elif name == "data" and self._node is not None:
            key = self._key_names.get(attributes.get("key", ""), "")
            self.data_lines.setdefault((self._node, key), line)
        elif name == "edge" and "target" in attributes:
            self.edge_lines.setdefault(attributes["target"], line)

    def _end(self, tag: str) -> None:
        if tag.removeprefix(_NS[1:]) == "node":
            self._node = None


class _LineFinder:
    """Locates the problems of the built DAG at the lines of their nodes, once asked."""

    def __init__(self, data: bytes, node_ids: list[str]) -> None:
        self._data = data
        self._node_ids = node_ids

    def locate(self, wanted: Collection[DataPath]) -> Mapping[DataPath, int]:
        """The lines of the wanted paths ("jobs", index[, field]) that the file shows."""
        found = _ElementLines(self._data)
        lines: dict[DataPath, int] = {}
        for path in wanted:
            line = self._line(found, path)
            if line is not None:
                lines[path] = line
        return lines

    def _line(self, found: _ElementLines, path: DataPath) -> int | None:
        if len(path) < 2 or path[0] != "jobs" or not isinstance(path[1], int):
            return found.graph_line if not path else None
        node_id = self._node_ids[path[1]]
        field: Any = path[2] if len(path) > 2 else None
        if field == "depends_on" and node_id in found.edge_lines:
            return found.edge_lines[node_id]
        return found.data_lines.get((node_id, field)) or found.node_lines.get(node_id)
