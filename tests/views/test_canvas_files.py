"""Files on the canvas, driven like a user: named ports on jobs, file nodes for batch inputs
and outputs, dragging an output onto a job to make it read the file (one undo step)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QContextMenuEvent, QDragEnterEvent, QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit, QTableWidgetItem

from app.models import dag_files
from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from app.views.canvas.file_ports import FileNodeItem, FilePortItem, PortKey
from app.views.canvas.file_properties import FilesEditor
from tests.views.canvas_helpers import (
    LEFT,
    NO_KEYS,
    drag,
    example,
    node,
    open_canvas,
    point,
    redo,
    undo,
)


@pytest.fixture
async def window(bridge: EngineBridge, tmp_path: Path) -> AsyncIterator[CanvasWindow]:
    async with open_canvas(bridge) as win:
        assert win.open_file(example(tmp_path, "files.yaml"))
        yield win


def port(window: CanvasWindow, job: str, side: str, name: str) -> FilePortItem:
    key = PortKey(window.document.node_named(job), side, name)
    return window.scene.files.ports[key]


def on_screen(window: CanvasWindow, item: FilePortItem | FileNodeItem) -> QPoint:
    where = item.port_point() if isinstance(item, FileNodeItem) else item.scenePos()
    return window.view.mapFromScene(where)


def inputs(window: CanvasWindow, job: str) -> dict[str, str]:
    document = window.document
    return dag_files.job_inputs(document.fields(document.node_named(job)))


async def test_jobs_show_named_ports_and_batch_files_are_file_nodes(window: CanvasWindow) -> None:
    files = window.scene.files
    assert {(k.side, k.name) for k in files.ports if k.node == node(window, "count").node_id} == {
        ("in", "reads"),
        ("in", "kmers"),
        ("out", "counts"),
    }
    batch = {(k.side, k.name) for k in files.file_nodes}
    assert batch == {("in", "reference"), ("in", "samples"), ("out", "0"), ("out", "1")}
    assert len(files.links) == 5 + 2  # five job inputs, two batch outputs


async def test_dragging_an_output_onto_a_job_makes_it_an_input_in_one_undo_step(
    window: CanvasWindow,
) -> None:
    view = window.view
    window.view.fit_all()
    start = on_screen(window, port(window, "index", "out", "kmers"))
    before = window.document.to_text()
    # report already reads index.kmers: refused with the reason, nothing changes
    drag(view, start, point(view, node(window, "report")))
    assert "already reads" in view.hint_label.text() and window.undo_stack.count() == 0
    # a new job reads it: dropped on the job's body
    view.add_node("bash", view.mapToScene(view.viewport().rect().center()))
    new = window.document.name(window.scene.selected_node_ids()[0])
    drag(view, start, point(view, node(window, new)))
    assert inputs(window, new) == {"kmers": "index.kmers"}
    assert window.undo_stack.count() == 2
    assert PortKey(node(window, new).node_id, "in", "kmers") in window.scene.files.ports
    assert window.document.validate() == []
    undo(window)
    assert inputs(window, new) == {}
    redo(window)
    assert inputs(window, new) == {"kmers": "index.kmers"}
    undo(window)
    undo(window)
    assert window.document.to_text() == before


async def test_a_batch_input_is_dragged_onto_a_job_and_a_cycle_is_refused(
    window: CanvasWindow,
) -> None:
    view = window.view
    window.view.fit_all()
    reference = window.scene.files.file_nodes[PortKey(None, "in", "reference")]
    drag(view, on_screen(window, reference), point(view, node(window, "report")))
    assert inputs(window, "report")["reference"] == "reference"
    summary = on_screen(window, port(window, "report", "out", "summary"))
    drag(view, summary, point(view, node(window, "index")))
    assert "cycle" in view.hint_label.text()
    assert window.undo_stack.count() == 1


def menu_action(window: CanvasWindow, at: QPoint, text: str) -> None:
    """Right-click at a point of the canvas and choose an entry of the menu."""
    viewport = window.view.viewport()
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, at, viewport.mapToGlobal(at))
    QApplication.sendEvent(viewport, event)
    menu = window.file_gestures.last_menu
    assert menu is not None
    action = next(a for a in menu.actions() if a.text() == text)
    action.trigger()
    menu.close()


def drop_files(window: CanvasWindow, paths: list[Path], at: QPoint) -> bool:
    """Drag files from the file manager and let go over the canvas."""
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    viewport = window.view.viewport()
    enter = QDragEnterEvent(at, Qt.DropAction.CopyAction, data, LEFT, NO_KEYS)
    QApplication.sendEvent(viewport, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(QPointF(at), Qt.DropAction.CopyAction, data, LEFT, NO_KEYS)
    QApplication.sendEvent(viewport, drop)
    return drop.isAccepted()


async def test_write_to_adds_a_batch_output_and_undo_takes_it_back(
    window: CanvasWindow, tmp_path: Path
) -> None:
    window.view.fit_all()
    window.file_gestures.ask_destination = lambda name: str(tmp_path / "out" / f"{name}.tsv")
    menu_action(window, on_screen(window, port(window, "index", "out", "kmers")), "Write to…")
    written = window.document.batch["outputs"][-1]
    assert written == {"from": "index.kmers", "to": str(tmp_path / "out" / "kmers.tsv")}
    assert PortKey(None, "out", "2") in window.scene.files.file_nodes
    assert window.document.validate() == [] and window.undo_stack.count() == 1
    undo(window)
    assert len(window.document.batch["outputs"]) == 2
    assert PortKey(None, "out", "2") not in window.scene.files.file_nodes


async def test_removing_an_input_from_its_port_menu(window: CanvasWindow) -> None:
    window.view.fit_all()
    menu_action(
        window, on_screen(window, port(window, "count", "in", "kmers")), "Remove input kmers"
    )
    assert inputs(window, "count") == {"reads": "samples"}
    assert PortKey(node(window, "count").node_id, "in", "kmers") not in window.scene.files.ports


async def test_a_file_dropped_from_the_file_manager_becomes_a_batch_input(
    window: CanvasWindow, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    dropped = tmp_path / "data" / "genes.bed"
    dropped.write_text("chr1\t1\t2\n")
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.txt"
    outside.write_text("x")
    center = window.view.viewport().rect().center()
    assert drop_files(window, [dropped, outside], center)
    batch_inputs = window.document.batch["inputs"]
    assert batch_inputs["genes"] == "data/genes.bed"  # beside the DAG file: relative
    assert batch_inputs[f"{tmp_path.name}_elsewhere".replace("-", "_")] == str(outside)
    assert PortKey(None, "in", "genes") in window.scene.files.file_nodes
    assert window.undo_stack.count() == 2 and window.document.validate() == []
    assert not drop_files(window, [tmp_path / "missing.txt"], center)  # not a file: refused
    outside.unlink()


def files_table(window: CanvasWindow, job: str) -> FilesEditor:
    window.scene.select_nodes([window.document.node_named(job)])
    editor = window.properties.files
    assert editor.node_id == window.document.node_named(job)
    return editor


def cell(editor: FilesEditor, kind: str, name: str, column: int) -> QTableWidgetItem:
    table = editor.table
    row = next(
        r
        for r in range(table.rowCount())
        if (table.item(r, 0).text(), table.item(r, 1).text()) == (kind, name)  # type: ignore[union-attr]
    )
    item = table.item(row, column)
    assert item is not None
    return item


async def test_the_property_panel_lists_and_edits_inputs_and_outputs(window: CanvasWindow) -> None:
    editor = files_table(window, "count")
    table = editor.table
    rows = [tuple(table.item(r, c).text() for c in range(3)) for r in range(table.rowCount())]  # type: ignore[union-attr]
    assert rows == [
        ("input", "reads", "samples"),
        ("input", "kmers", "index.kmers"),
        ("output", "counts", "{a: '{root}.a.txt', b: '{root}.b.txt'}"),
    ]
    # renaming an output follows the reference in `report` and the batch output
    cell(editor, "output", "counts", 1).setText("hits")
    document = window.document
    assert inputs(window, "report")["counts"] == "count.hits"
    assert document.batch["outputs"][1]["from"] == "count.hits"
    assert document.validate() == [] and window.undo_stack.count() == 1
    # a bad name or reference is refused with the reason, and nothing changes
    cell(editor, "input", "reads", 1).setText("PATH")
    assert "shadow" in editor.problem_label.text()
    cell(editor, "input", "kmers", 2).setText("nowhere.x")
    assert "names no batch input" in editor.problem_label.text()
    cell(editor, "output", "hits", 2).setText(".bad ext")
    assert "not an extension" in editor.problem_label.text()
    assert window.undo_stack.count() == 1
    # add an output and an input, then remove them: one step each
    editor.add_output()
    assert "out" in dag_files.job_outputs(document.fields(document.node_named("count")))
    cell(editor, "output", "out", 2).setText(".log")
    assert dag_files.job_outputs(document.fields(document.node_named("count")))["out"] == ".log"
    editor.table.setCurrentCell(cell(editor, "output", "out", 1).row(), 1)
    editor.remove_selected()
    assert "out" not in dag_files.job_outputs(document.fields(document.node_named("count")))
    assert window.undo_stack.count() == 4
    for _ in range(4):
        undo(window)
    assert inputs(window, "report")["counts"] == "count.counts"
    assert [
        tuple(table.item(r, c).text() for c in range(3)) for r in range(table.rowCount())
    ] == rows  # type: ignore[union-attr]


async def test_a_three_job_pipeline_drawn_with_files_saves_and_reopens_the_same(
    bridge: EngineBridge, tmp_path: Path
) -> None:
    async with open_canvas(bridge) as window:
        view = window.view
        names = []
        for x in (-300, 0, 300):
            center = view.mapToScene(view.viewport().rect().center()) + QPointF(x, 0)
            view.add_node("bash", center)
            names.append(window.document.name(window.scene.selected_node_ids()[0]))
        first, second, third = names
        for job in (first, second):
            files_table(window, job).add_output()
        drag(
            view,
            on_screen(window, port(window, first, "out", "out")),
            point(view, node(window, second)),
        )
        drag(
            view,
            on_screen(window, port(window, second, "out", "out")),
            point(view, node(window, third)),
        )
        assert inputs(window, third) == {"out": f"{second}.out"}
        assert window.document.validate() == []
        n_steps = window.undo_stack.count()
        assert n_steps == 3 + 2 + 2
        path = tmp_path / "pipeline.yaml"
        assert window.save(path)
        text = window.document.to_text()
        picture = {k: item.scenePos() for k, item in window.scene.files.ports.items()}
        assert window.open_file(path)
        assert window.document.to_text() == text
        assert {k: item.scenePos() for k, item in window.scene.files.ports.items()} == picture
        assert len(window.scene.files.links) == 2


async def test_renaming_a_job_by_typing_renames_the_references_to_its_outputs(
    window: CanvasWindow,
) -> None:
    window.scene.select_nodes([window.document.node_named("count")])
    line = window.properties.editors["name"]
    assert isinstance(line, QLineEdit)
    line.setFocus()
    line.selectAll()
    for part in ("ta", "ll", "y"):  # a pause between keys commits: the steps merge
        QTest.keyClicks(line, part)
        window.properties.commit()
    document = window.document
    assert document.node_named("tally") is not None
    assert inputs(window, "report")["counts"] == "tally.counts"
    assert document.batch["outputs"][1]["from"] == "tally.counts"
    assert document.validate() == []
    assert window.undo_stack.count() == 1  # the typing, references included, is one step
    undo(window)
    assert inputs(window, "report")["counts"] == "count.counts"
    assert document.batch["outputs"][1]["from"] == "count.counts"
    redo(window)
    assert inputs(window, "report")["counts"] == "tally.counts"


async def test_file_items_hide_in_the_overview_and_survive_unrelated_edits(
    window: CanvasWindow,
) -> None:
    files = window.scene.files
    a_port = next(iter(files.ports.values()))
    window.document.set_field(window.document.node_named("count"), "cpu", 2)
    assert next(iter(files.ports.values())) is a_port  # not made again for a cpu edit
    window.scene.set_overview(True)
    items = [*files.ports.values(), *files.file_nodes.values(), *files.links]
    assert not any(item.isVisible() for item in items)
    window.scene.set_overview(False)
    assert all(item.isVisible() for item in items)


async def test_a_file_dropped_on_a_job_becomes_its_input_in_one_step(
    window: CanvasWindow, tmp_path: Path
) -> None:
    dropped = tmp_path / "genes.bed"
    dropped.write_text("chr1\t1\t2\n")
    before = window.document.to_text()
    window.view.fit_all()
    assert drop_files(window, [dropped], point(window.view, node(window, "report")))
    assert window.document.batch["inputs"]["genes"] == "genes.bed"
    assert inputs(window, "report")["genes"] == "genes"
    assert window.undo_stack.count() == 1 and window.document.validate() == []
    undo(window)
    assert window.document.to_text() == before
