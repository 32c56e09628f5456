"""Auto-layout of a DAG: layered left to right by topological generation.

Each generation (jobs whose parents are all in earlier ones) is a column; within a column the
jobs are ordered by the mean height of their parents (one barycenter pass, enough to untangle
the usual fan-out and fan-in) and spread evenly around y = 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

import networkx as nx

NodeT = TypeVar("NodeT", bound=Hashable)

LAYER_STEP_X = 240.0  # scene units between columns: a node's width and room for edges
ROW_STEP_Y = 80.0  # between nodes of one column


class CycleError(ValueError):
    """The graph has a cycle, so it has no layers."""


def layered_layout(
    node_ids: Sequence[NodeT],
    edges: Iterable[tuple[NodeT, NodeT]],
    *,
    x_step: float = LAYER_STEP_X,
    y_step: float = ROW_STEP_Y,
) -> dict[NodeT, tuple[float, float]]:
    """Place each node at (x, y): x by its topological generation, y spread within it."""
    rank = {node: k for k, node in enumerate(node_ids)}  # ties keep the given order
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(node_ids)
    graph.add_edges_from(edges)
    try:
        generations = list(nx.topological_generations(graph))
    except nx.NetworkXUnfeasible as exc:
        raise CycleError("the graph has a cycle, so it cannot be laid out in layers") from exc
    y_of: dict[NodeT, float] = {}
    positions: dict[NodeT, tuple[float, float]] = {}
    predecessors = graph.pred
    for layer, generation in enumerate(generations):
        if layer == 0:
            ordered = sorted(generation, key=rank.__getitem__)
        else:
            ordered = sorted(
                generation, key=lambda node: (_barycenter(predecessors[node], y_of), rank[node])
            )
        x = layer * x_step
        top = -(len(ordered) - 1) / 2
        for k, node in enumerate(ordered):
            y = (top + k) * y_step
            y_of[node] = y
            positions[node] = (x, y)
    return positions


def _barycenter(parents: Iterable[NodeT], y_of: dict[NodeT, float]) -> float:
    total, n = 0.0, 0
    for parent in parents:
        total += y_of[parent]
        n += 1
    return total / n if n else 0.0
