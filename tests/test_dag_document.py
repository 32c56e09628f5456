"""The canvas's DAG document without Qt: operations and their events, refused edges, file
round trips, validation, and the layered auto-layout."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from app.models.dag_document import DagDocument, check_job_field, node_kind, scatter_count
from app.models.dag_parts import (
    DocumentEvent,
    EdgesAdded,
    EdgesRemoved,
    NodeChanged,
    NodesAdded,
    NodesMoved,
    NodesRemoved,
)
from app.models.layout import CycleError, layered_layout
from app.models.spec import DagFileError, load_dag_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def diamond() -> tuple[DagDocument, dict[str, int]]:
    document = DagDocument.load(EXAMPLES / "diamond.yaml")
    return document, {document.name(n): n for n in document.node_ids}


def recorded(document: DagDocument) -> list[DocumentEvent]:
    events: list[DocumentEvent] = []
    document.subscribe(events.append)
    return events


# ---------------------------------------------------------------------------------------------
# Operations


def test_operations_change_the_document_and_tell_listeners() -> None:
    document = DagDocument()
    events = recorded(document)
    a = document.add_node({"name": "a", "command": "echo a"}, (0, 0))
    b = document.add_node({"name": "b", "command": "echo b"}, (200, 0))
    assert document.add_edge(a, b) is None
    document.set_field(b, "cpu", 2)
    document.move_nodes({a: (10, 20)})
    assert document.parents(b) == [a] and document.children(a) == [b]
    assert document.fields(b)["cpu"] == 2 and document.position(a) == (10, 20)
    document.set_field(b, "cpu", None)
    assert "cpu" not in document.fields(b)
    assert events == [
        NodesAdded((a,)),
        NodesAdded((b,)),
        EdgesAdded(((a, b),)),
        NodeChanged(b, "cpu"),
        NodesMoved((a,)),
        NodeChanged(b, "cpu"),
    ]


def test_removing_nodes_takes_their_edges_and_inserting_puts_everything_back() -> None:
    document, ids = diamond()
    before = document.to_text()
    events = recorded(document)
    removed = document.remove_nodes([ids["left"]])
    assert ids["left"] not in document
    assert document.edges == [(ids["prepare"], ids["right"]), (ids["right"], ids["merge"])]
    assert events == [
        EdgesRemoved(((ids["prepare"], ids["left"]), (ids["left"], ids["merge"]))),
        NodesRemoved((ids["left"],)),
    ]
    document.insert(removed, owned=True)
    assert document.to_text() == before  # same order of jobs and of depends_on


def test_a_removed_edge_goes_back_to_its_place_among_the_dependencies() -> None:
    document, ids = diamond()
    before = document.to_text()
    removed = document.remove_nodes([], edges=[(ids["left"], ids["merge"])])
    assert document.parents(ids["merge"]) == [ids["right"]]
    document.insert(removed)
    assert document.parents(ids["merge"]) == [ids["left"], ids["right"]]
    assert document.to_text() == before


@pytest.mark.parametrize(
    ("parent", "child", "reason"),
    [
        ("merge", "prepare", "that would make a cycle: merge → prepare → left → merge"),
        ("left", "left", "a job cannot depend on itself"),
        ("prepare", "left", "left already depends on prepare"),
    ],
)
def test_a_cycle_or_a_duplicate_edge_is_refused_with_a_reason(
    parent: str, child: str, reason: str
) -> None:
    document, ids = diamond()
    events = recorded(document)
    assert document.add_edge(ids[parent], ids[child]) == reason
    assert events == [] and len(document.edges) == 4


def test_renaming_keeps_the_edges_and_the_file_follows() -> None:
    document, ids = diamond()
    document.set_field(ids["prepare"], "name", "setup")
    data = document.to_data()
    assert data["jobs"][1]["depends_on"] == ["setup"]
    assert "setup" in data["layout"] and "prepare" not in data["layout"]


def test_copies_get_fresh_ids_unused_names_and_the_edges_among_them() -> None:
    document, ids = diamond()
    fragment = document.fragment([ids["left"], ids["merge"]])
    copied = document.copy_fragment(fragment, (40, 40))
    document.insert(copied)
    names = [document.name(n) for n in copied.node_ids]
    assert names == ["left-2", "merge-2"]
    assert document.parents(copied.node_ids[1]) == [copied.node_ids[0]]
    x, y = document.position(ids["left"])
    assert document.position(copied.node_ids[0]) == (x + 40, y + 40)
    assert document.unique_name("merge-2") == "merge-3"


def test_kinds_and_scatter_counts() -> None:
    assert node_kind({"command": "x"}) == "bash"
    assert node_kind({"command": "x", "image": "ubuntu"}) == "container"
    scatter = {"command": "x", "scatter": {"sample": ["a", "b", "c"]}}
    assert node_kind(scatter) == "scatter" and scatter_count(scatter) == 3
    assert check_job_field("scatter", {"sample": []}) == "'sample': the list of values is empty"
    assert check_job_field("cpu", 3) is not None and check_job_field("cpu", 2) is None


# ---------------------------------------------------------------------------------------------
# Files


def test_data_round_trips_through_from_data() -> None:
    document, _ = diamond()
    data = document.to_data()
    again = DagDocument.from_data(data)
    assert again.to_data() == data
    assert again.positions == document.positions


def test_save_open_save_gives_the_same_text(tmp_path: Path) -> None:
    document = DagDocument.load(EXAMPLES / "per-sample.yaml")
    document.move_nodes({document.node_ids[0]: (12.6, -3.2)})  # rounded on save
    first, second = tmp_path / "one.yaml", tmp_path / "two.yaml"
    document.save(first)
    DagDocument.load(first).save(second)
    assert first.read_text() == second.read_text()
    original = load_dag_file(EXAMPLES / "per-sample.yaml")
    assert load_dag_file(first) == dataclasses.replace(original, source=str(first))


def test_json_files_stay_json(tmp_path: Path) -> None:
    document, _ = diamond()
    path = tmp_path / "dag.json"
    document.save(path)
    assert path.read_text().startswith("{")
    assert DagDocument.load(path).to_data() == document.to_data()


def test_a_file_without_layout_is_laid_out_and_one_with_layout_keeps_it(tmp_path: Path) -> None:
    document, ids = diamond()
    assert document.position(ids["prepare"])[0] < document.position(ids["left"])[0]
    document.move_nodes({ids["merge"]: (1000, 500)})
    path = tmp_path / "moved.yaml"
    document.save(path)
    assert DagDocument.load(path).position(ids["merge"]) == (1000, 500)


def test_what_a_canvas_cannot_show_is_refused_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            jobs:
              - name: a
                command: echo
                depends_on: [b]
              - name: b
                command: echo
                depends_on: [a]
              - name: c
                command: echo
                depends_on: [nowhere]
            """
        )
    )
    with pytest.raises(DagFileError) as caught:
        DagDocument.load(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:11: job 'c': field 'depends_on': depends on unknown job 'nowhere'"
    ]
    path.write_text(path.read_text().replace("[nowhere]", "[a]"))
    with pytest.raises(DagFileError) as caught:
        DagDocument.load(path)
    assert [p.message for p in caught.value.problems] == ["cycle: a -> b -> a"]
    path.write_text("jobs: [")
    with pytest.raises(DagFileError) as caught:
        DagDocument.load(path)
    assert caught.value.problems[0].line is not None


def test_validate_collects_every_problem_and_never_raises() -> None:
    document, ids = diamond()
    assert document.validate() == []
    document.set_field(ids["left"], "cpu", 3)
    document.set_field(ids["right"], "name", "left")
    document.set_field(ids["merge"], "command", None)
    document.set_field(ids["merge"], "scatter", {"sample": ["a", "b"]})  # known to the canvas
    problems = document.validate()
    by_place = {(p.job, p.field): p.message for p in problems}
    assert sorted(by_place) == [("left", "cpu"), ("left", "name"), ("merge", "command")]
    assert "is not a valid cpu" in by_place["left", "cpu"]
    assert "duplicate job name 'left'" in by_place["left", "name"]
    assert DagDocument().validate()[0].field == "jobs"  # empty: no jobs yet


# ---------------------------------------------------------------------------------------------
# Layout


def test_a_chain_is_laid_out_in_one_row_left_to_right() -> None:
    positions = layered_layout(["a", "b", "c"], [("a", "b"), ("b", "c")], x_step=100, y_step=10)
    assert positions == {"a": (0, 0), "b": (100, 0), "c": (200, 0)}


def test_a_diamond_is_layered_with_the_branches_side_by_side() -> None:
    edges = [("top", "l"), ("top", "r"), ("l", "end"), ("r", "end")]
    positions = layered_layout(["top", "l", "r", "end"], edges, x_step=100, y_step=50)
    assert positions == {
        "top": (0, 0),
        "l": (100, -25),
        "r": (100, 25),
        "end": (200, 0),
    }


def test_children_follow_their_parents_order_to_avoid_crossings() -> None:
    edges = [("p1", "c1"), ("p2", "c2")]
    positions = layered_layout(["p1", "p2", "c2", "c1"], edges, y_step=10)
    assert positions["c1"][1] < positions["c2"][1]  # c1 is beside p1, above c2


def test_a_cycle_cannot_be_laid_out() -> None:
    with pytest.raises(CycleError):
        layered_layout([1, 2], [(1, 2), (2, 1)])


def test_ten_thousand_nodes_lay_out_in_layers() -> None:
    # how fast is bench/canvas.py's business (a timed test flakes on a busy machine)
    n = 10_000
    edges = [(k // 3, k) for k in range(1, n)] + [(k - 1, k) for k in range(2, n, 7)]
    positions = layered_layout(list(range(n)), edges)
    assert len(positions) == n
    assert all(positions[p][0] < positions[c][0] for p, c in edges)
