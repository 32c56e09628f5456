"""The DAG canvas driven like a user: drop jobs from the palette, connect them with the mouse,
select, move, delete, copy and lay out, each undone and redone; zoom, pan and the minimap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest

from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from app.views.canvas.items import KIND_COLORS, NODE_HEIGHT, NODE_WIDTH, PORT_RADIUS
from tests.views.canvas_helpers import (
    LEFT,
    NO_KEYS,
    click,
    drag,
    drop_kind,
    edges,
    example,
    names,
    node,
    open_canvas,
    pixel,
    point,
    redo,
    undo,
)


@pytest.fixture
async def window(bridge: EngineBridge) -> AsyncIterator[CanvasWindow]:
    async with open_canvas(bridge) as win:
        yield win


@pytest.fixture
async def diamond(window: CanvasWindow, tmp_path: Path) -> CanvasWindow:
    assert window.open_file(example(tmp_path, "diamond.yaml"))
    return window


# ---------------------------------------------------------------------------------------------
# Drawing a DAG


async def test_a_job_dragged_from_the_palette_lands_where_it_is_dropped(
    window: CanvasWindow,
) -> None:
    view = window.view
    at = QPoint(300, 200)
    drop_kind(window, "bash", at)
    drop_kind(window, "container", QPoint(300, 350))
    drop_kind(window, "bash", QPoint(500, 200))
    assert names(window) == ["job", "container", "job-2"]
    job = node(window, "job")
    center = view.mapToScene(at)
    assert job.pos() == center - QPointF(NODE_WIDTH / 2, NODE_HEIGHT / 2)
    assert window.document.position(job.node_id) == (job.pos().x(), job.pos().y())
    assert node(window, "container").subtitle == "ubuntu:24.04"
    assert window.properties.editors["name"].text() == "job-2"  # the new job is selected
    assert window.windowTitle() == "Untitled* — LabBatch DAG editor"

    job_id = job.node_id
    for _ in range(3):
        undo(window)
    assert names(window) == [] and not window.scene.node_items
    assert window.windowTitle() == "Untitled — LabBatch DAG editor"
    redo(window)
    assert names(window) == ["job"] and window.document.node_ids == [job_id]


async def test_dragging_from_an_output_port_to_an_input_port_connects_two_jobs(
    window: CanvasWindow,
) -> None:
    view = window.view
    drop_kind(window, "bash", QPoint(250, 300))
    drop_kind(window, "scatter", QPoint(600, 300))
    job, scatter = node(window, "job"), node(window, "scatter")
    assert scatter.subtitle == "scatter \N{MULTIPLICATION SIGN}2"
    drag(view, point(view, job, "out"), point(view, scatter, "in"))
    assert edges(window) == {("job", "scatter")}
    edge = window.scene.edge_items[(job.node_id, scatter.node_id)]
    assert edge.path().pointAtPercent(0) == job.output_point()
    assert edge.path().elementAt(3).x == scatter.input_point().x() - PORT_RADIUS  # the end

    undo(window)
    assert edges(window) == set() and not window.scene.edge_items
    redo(window)
    assert edges(window) == {("job", "scatter")}

    drop_kind(window, "bash", QPoint(250, 500))  # backwards: from an input to an output
    drag(view, point(view, node(window, "job-2"), "in"), point(view, scatter, "out"))
    assert edges(window) == {("job", "scatter"), ("scatter", "job-2")}


async def test_a_cycle_or_a_duplicate_is_refused_with_a_hint_by_the_pointer(
    diamond: CanvasWindow,
) -> None:
    window, view = diamond, diamond.view
    n_commands = window.undo_stack.count()
    drag(
        view, point(view, node(window, "merge"), "out"), point(view, node(window, "prepare"), "in")
    )
    assert view.hint_label.isVisible()
    assert view.hint_label.text() == (
        "Cannot connect: that would make a cycle: merge → prepare → left → merge"
    )
    drag(view, point(view, node(window, "prepare"), "out"), point(view, node(window, "left"), "in"))
    assert view.hint_label.text() == "Cannot connect: left already depends on prepare"
    assert window.undo_stack.count() == n_commands and len(edges(window)) == 4
    assert not window.modified

    QTest.keyClick(view, Qt.Key.Key_Escape)
    assert not view.hint_label.isVisible()


async def test_escape_cancels_a_connection_being_drawn(diamond: CanvasWindow) -> None:
    window, view = diamond, diamond.view
    start, end = point(view, node(window, "left"), "out"), point(view, node(window, "right"), "in")
    n_items = len(window.scene.items())
    QTest.mousePress(view.viewport(), LEFT, NO_KEYS, start)
    QTest.mouseMove(view.viewport(), end)
    assert len(window.scene.items()) == n_items + 1  # the line following the pointer
    QTest.keyClick(view, Qt.Key.Key_Escape)
    QTest.mouseRelease(view.viewport(), LEFT, NO_KEYS, end)
    assert len(window.scene.items()) == n_items
    assert len(edges(window)) == 4 and not window.modified


# ---------------------------------------------------------------------------------------------
# Selecting, moving, deleting, copying


async def test_dragging_a_job_moves_it_in_one_undo_step(diamond: CanvasWindow) -> None:
    window, view = diamond, diamond.view
    merge = node(window, "merge")
    before = window.document.position(merge.node_id)
    start = point(view, merge)
    drag(view, start, start + QPoint(60, 30))
    x, y = window.document.position(merge.node_id)
    assert x == pytest.approx(before[0] + 60 / view.zoom, abs=2 / view.zoom)
    assert y == pytest.approx(before[1] + 30 / view.zoom, abs=2 / view.zoom)
    edge = window.scene.edge_items[(node(window, "left").node_id, merge.node_id)]
    assert edge.path().elementAt(3).x == merge.input_point().x() - PORT_RADIUS  # followed
    assert window.undo_stack.count() == 1 and window.modified

    QTest.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.document.position(merge.node_id) == before and merge.pos() == QPointF(*before)
    assert not window.modified
    shift_ctrl = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    QTest.keyClick(view, Qt.Key.Key_Z, shift_ctrl)
    assert window.document.position(merge.node_id) == (x, y)


async def test_a_rubber_band_selects_the_jobs_it_touches(diamond: CanvasWindow) -> None:
    window, view = diamond, diamond.view
    left, right = node(window, "left"), node(window, "right")
    start = view.mapFromScene(left.pos() + QPointF(20, -30))
    end = view.mapFromScene(right.pos() + QPointF(NODE_WIDTH - 20, NODE_HEIGHT + 30))
    drag(view, start, end)
    assert window.scene.selected_node_ids() == [left.node_id, right.node_id]
    assert window.properties.node_id is None  # two jobs: nothing to edit one by one

    click(view, point(view, left))
    assert window.scene.selected_node_ids() == [left.node_id]
    click(view, point(view, right), Qt.KeyboardModifier.ControlModifier)
    assert window.scene.selected_node_ids() == [left.node_id, right.node_id]


async def test_delete_removes_jobs_with_their_edges_and_undo_restores_them(
    diamond: CanvasWindow, tmp_path: Path
) -> None:
    window, view = diamond, diamond.view
    before = window.document.to_text()
    click(view, point(view, node(window, "left")))
    QTest.keyClick(view, Qt.Key.Key_Delete)
    assert names(window) == ["prepare", "right", "merge"]
    assert edges(window) == {("prepare", "right"), ("right", "merge")}
    assert len(window.scene.edge_items) == 2

    undo(window)
    assert window.document.to_text() == before  # same jobs, order and dependencies
    assert len(window.scene.edge_items) == 4 and not window.modified
    redo(window)
    assert "left" not in names(window)

    undo(window)  # a selected edge alone
    edge = window.scene.edge_items[(node(window, "left").node_id, node(window, "merge").node_id)]
    window.scene.clearSelection()
    edge.setSelected(True)
    window.editor_actions.delete.trigger()
    assert ("left", "merge") not in edges(window) and len(names(window)) == 4
    undo(window)
    assert window.document.to_text() == before


async def test_copy_paste_and_duplicate_make_renamed_copies(diamond: CanvasWindow) -> None:
    window, view = diamond, diamond.view
    actions = window.editor_actions
    click(view, point(view, node(window, "prepare")))
    click(view, point(view, node(window, "left")), Qt.KeyboardModifier.ControlModifier)
    actions.copy.trigger()
    actions.paste.trigger()
    assert names(window)[4:] == ["prepare-2", "left-2"]
    assert ("prepare-2", "left-2") in edges(window) and len(edges(window)) == 5
    pasted = node(window, "left-2")
    assert pasted.isSelected() and not node(window, "left").isSelected()
    assert pasted.pos() == node(window, "left").pos() + QPointF(40, 40)

    undo(window)
    assert names(window) == ["prepare", "left", "right", "merge"]
    redo(window)
    assert names(window)[4:] == ["prepare-2", "left-2"]

    click(view, point(view, node(window, "merge")))
    QTest.keyClick(view, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert names(window)[-1] == "merge-2"
    undo(window)
    assert names(window)[-1] == "left-2"
    redo(window)
    assert names(window)[-1] == "merge-2"


async def test_auto_layout_is_one_undoable_step(diamond: CanvasWindow) -> None:
    window, view = diamond, diamond.view
    merge = node(window, "merge")
    drag(view, point(view, merge), point(view, merge) + QPoint(0, 120))
    moved = window.document.position(merge.node_id)
    window.editor_actions.layout.trigger()
    assert window.document.position(merge.node_id) == (480.0, 0.0)
    assert merge.pos() == QPointF(480, 0)
    undo(window)
    assert window.document.position(merge.node_id) == moved
    redo(window)
    assert window.document.position(merge.node_id) == (480.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Zoom, pan, overview


async def test_zooming_out_draws_jobs_as_plain_blocks(diamond: CanvasWindow) -> None:
    window, view = diamond, diamond.view
    prepare = node(window, "prepare")
    zoom = view.zoom
    wheel = QWheelEvent(
        QPointF(point(view, prepare)),
        QPointF(view.mapToGlobal(point(view, prepare))),
        QPoint(),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        NO_KEYS,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    view.wheelEvent(wheel)
    assert view.zoom == pytest.approx(zoom * 1.15)
    assert pixel(view, prepare).name() == "#fafafa"  # close up: a card with its name

    view.zoom_by(0.3 / view.zoom)
    assert not window.scene.overview
    assert pixel(view, prepare).name() == KIND_COLORS["bash"]  # far: a plain block
    view.zoom_by(0.05 / view.zoom)
    assert window.scene.overview
    assert pixel(view, prepare).name() == KIND_COLORS["bash"]  # farther: drawn at once

    QTest.keyClick(view, Qt.Key.Key_F)  # fit
    assert view.visible_scene_rect().contains(window.scene.nodes_rect())
    assert not window.scene.overview


async def test_space_drag_pans_and_the_minimap_goes_where_it_is_clicked(
    diamond: CanvasWindow,
) -> None:
    window, view = diamond, diamond.view
    view.zoom_by(2.0 / view.zoom)
    center = view.visible_scene_rect().center()
    QTest.keyPress(view, Qt.Key.Key_Space)
    drag(view, QPoint(300, 300), QPoint(200, 250))
    QTest.keyRelease(view, Qt.Key.Key_Space)
    moved = view.visible_scene_rect().center()
    assert moved.x() == pytest.approx(center.x() + 100 / view.zoom, abs=1)
    assert moved.y() == pytest.approx(center.y() + 50 / view.zoom, abs=1)
    assert window.document.position(node(window, "prepare").node_id) == (0, 0)  # not a move

    minimap = view.minimap
    minimap.grab()  # painted once: it knows its scale
    merge = node(window, "merge")
    target = merge.pos() + QPointF(NODE_WIDTH / 2, NODE_HEIGHT / 2)
    spot = minimap.minimap_point(target)
    QTest.mouseClick(minimap, LEFT, NO_KEYS, spot.toPoint())
    shown = view.visible_scene_rect().center()
    assert (shown - target).manhattanLength() < 20
