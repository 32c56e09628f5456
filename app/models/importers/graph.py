"""From a graph (GraphML or DOT) to DAG file data: nodes are jobs, an edge u → v makes v depend
on u, node attributes named like job fields set them and the others become job attributes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from app.models.dag_text import DataPath, TextSyntaxError
from app.models.dag_yaml import load_yaml
from app.models.importers.result import (
    ImportedDag,
    finish_import,
    renamed_note,
    unique_job_name,
)
from app.models.job_fields import FORMAT_VERSION, JOB_PARSERS
from app.models.spec import LineLocator

# fields whose text is taken as it is; other fields' text is read as YAML ("2" is 2, "true" true)
TEXT_FIELDS = frozenset({"name", "command", "image", "machine_type", "pool"})
# graph attributes that set the batch's fields; the rest (label, rankdir …) only draw the graph
BATCH_FIELDS = ("billing_project", "cancel_after_n_failures", "attributes")
# what yEd (through networkx) reads from its drawing: no meaning for a job
DRAWING_ATTRIBUTES = frozenset({"x", "y", "shape_type"})


@dataclass(slots=True)
class GraphNode:
    """A node as read from the file, with the lines of its first mention and its attributes."""

    node_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    line: int | None = None
    attribute_lines: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """An edge: `target` depends on `source`."""

    source: str
    target: str
    line: int | None = None


def field_value(key: str, value: object) -> object:
    """A graph attribute's value as the job field expects it: text read as YAML where apt."""
    if isinstance(value, float) and value.is_integer():
        return int(value)  # a GraphML double like 3.0 where a whole number is wanted
    if key in TEXT_FIELDS or not isinstance(value, str) or not value.strip():
        return value
    try:
        return load_yaml(value)
    except TextSyntaxError:
        return value  # validation says what is wrong with it


def dag_from_graph(
    *,
    name: str | None,
    graph_attributes: Mapping[str, Any],
    nodes: Sequence[GraphNode],
    edges: Sequence[GraphEdge],
    source: str,
    kind: str,
    lines: LineLocator | None = None,
) -> ImportedDag:
    """Build, validate and return the DAG of a graph; `lines` overrides the nodes' lines."""
    data: dict[str, Any] = {"version": FORMAT_VERSION, "name": name or PurePath(source).stem}
    for key in BATCH_FIELDS:
        if key in graph_attributes:
            data[key] = field_value(key, graph_attributes[key])
    taken: set[str] = set()
    notes: list[str] = []
    names: dict[str, str] = {}
    jobs: list[dict[str, Any]] = []
    for node in nodes:
        wanted = str(node.attributes.get("name", node.node_id))
        names[node.node_id] = unique_job_name(wanted, taken)
        if names[node.node_id] != wanted:
            notes.append(renamed_note(wanted, names[node.node_id]))
        jobs.append(_job(names[node.node_id], node.attributes))
    index_of = {node.node_id: index for index, node in enumerate(nodes)}
    edge_lines: dict[DataPath, int] = {}
    for edge in edges:
        job = jobs[index_of[edge.target]]
        parents = job.setdefault("depends_on", [])
        if isinstance(parents, str):
            parents = job["depends_on"] = [parents]
        if isinstance(parents, list):
            parents.append(names[edge.source])
        if edge.line is not None:
            edge_lines.setdefault(("jobs", index_of[edge.target], "depends_on"), edge.line)
    data["jobs"] = jobs
    return finish_import(
        data,
        source=source,
        kind=kind,
        lines=lines or _node_lines(nodes, edge_lines),
        notes=notes,
        commands_later=True,  # a drawing names its jobs; commands come in the canvas
    )


def _job(name: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = {"name": name}
    extra: dict[str, Any] = {}
    for key, value in attributes.items():
        if key == "name" or key in DRAWING_ATTRIBUTES:
            continue
        if key in JOB_PARSERS:
            job[key] = field_value(key, value)
        else:
            extra[key] = value
    if extra:
        own = job.setdefault("attributes", {})
        if isinstance(own, dict):  # else validation reports the `attributes` attribute
            job["attributes"] = {**extra, **own}
    return job


def _node_lines(nodes: Sequence[GraphNode], edge_lines: dict[DataPath, int]) -> dict[DataPath, int]:
    lines = dict(edge_lines)
    for index, node in enumerate(nodes):
        if node.line is not None:
            lines[("jobs", index)] = node.line
        for key, line in node.attribute_lines.items():
            lines[("jobs", index, key)] = line
    return lines
