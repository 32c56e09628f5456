"""Files on the canvas, driven like a user: named ports on jobs, file nodes for batch inputs
and outputs, dragging an output onto a job to make it read the file (one undo step)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint

from app.models import dag_files
from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from app.views.canvas.file_ports import FileNodeItem, FilePortItem, PortKey
from tests.views.canvas_helpers import drag, example, node, open_canvas, point, redo, undo


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
