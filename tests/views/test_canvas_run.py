"""Watching a batch on the DAG canvas: nodes take their jobs' state colours, a scatter node
shows its progress, hover says why a job waits, double-click lists a node's jobs with their
logs, and a failed node is retried from its context menu; the file stays unmodified."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF
from PySide6.QtGui import QAction, QHelpEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.engine.service import EngineService
from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from app.views.canvas.items import NODE_HEIGHT, NODE_WIDTH, NodeItem
from app.views.canvas.node_jobs import node_state, progress_text
from app.views.canvas.run_view import RunWatcher
from app.views.style import STATE_COLORS
from tests.views.canvas_helpers import LEFT, NO_KEYS, example, node, open_canvas, point
from tests.views.conftest import until

SCATTER_DAG = """version: 1
name: scattered
jobs:
  - name: count
    scatter: {sample: [a, b, c]}
    command: echo "counting $SAMPLE"
  - name: merge
    depends_on: [count]
    command: echo merged
"""

WAITING_DAG = """version: 1
name: waiting
jobs:
  - name: slow
    command: sleep 30
  - name: after-slow
    depends_on: [slow]
    command: echo done
  - name: broken
    command: exit 5
"""


@pytest.fixture
async def window(bridge: EngineBridge) -> AsyncIterator[CanvasWindow]:
    async with open_canvas(bridge, 1100, 700) as win:
        yield win


@pytest.fixture
async def watcher(window: CanvasWindow, bridge: EngineBridge) -> AsyncIterator[RunWatcher]:
    run = RunWatcher(bridge, window.scene, window.view, window)
    yield run
    run.stop()


async def _open_and_submit(window: CanvasWindow, service: EngineService, path: Path) -> int:
    assert window.open_file(path)
    return await service.submit(await service.load_dag(path))


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _body_color(window: CanvasWindow, item: NodeItem) -> str:
    """The colour of a node's body where no text is drawn (by its right end)."""
    at = window.view.mapFromScene(item.pos() + QPointF(NODE_WIDTH - 16, NODE_HEIGHT / 2))
    return window.view.viewport().grab().toImage().pixelColor(at).name()


def _action(menu_actions: list[QAction], text: str) -> QAction:
    return next(action for action in menu_actions if action.text() == text)


async def test_the_nodes_of_a_finished_batch_show_success_and_the_file_stays_unmodified(
    window: CanvasWindow, watcher: RunWatcher, service: EngineService, tmp_path: Path
) -> None:
    path = example(tmp_path, "diamond.yaml")
    before = path.read_bytes()
    batch_id = await _open_and_submit(window, service, path)
    ended: list[str] = []
    refreshes: list[None] = []
    watcher.batch_finished.connect(ended.append)
    watcher.changed.connect(lambda: refreshes.append(None))
    watcher.watch(batch_id)
    assert watcher.batch_id == batch_id

    await until(lambda: watcher.finished, what="the batch to end")
    assert ended == ["success"] and refreshes
    success = STATE_COLORS["Success"]
    for name in ("prepare", "left", "right", "merge"):
        item = node(window, name)
        assert item.fill == success, name
        assert item.run_text is None  # one job per node: no progress text
        assert watcher.node_states[item.node_id] == {"Success": 1}
    assert _body_color(window, node(window, "merge")) == success
    assert "merge — Success" in node(window, "merge").toolTip()
    assert not window.modified and window.undo_stack.count() == 0
    assert "*" not in window.windowTitle()

    watcher.stop()
    assert all(item.fill is None for item in window.scene.node_items.values())
    assert node(window, "merge").toolTip() == "merge — bash job"
    assert watcher.batch_id is None and not window.modified
    assert path.read_bytes() == before


async def test_a_scatter_node_shows_its_progress(
    window: CanvasWindow, watcher: RunWatcher, service: EngineService, tmp_path: Path
) -> None:
    path = _write(tmp_path, "scatter.yaml", SCATTER_DAG)
    batch_id = await _open_and_submit(window, service, path)
    watcher.watch(batch_id)
    await until(lambda: watcher.finished, what="the batch to end")
    count, merge = node(window, "count"), node(window, "merge")
    assert count.run_text == "3/3 done"
    assert watcher.node_states[count.node_id] == {"Success": 3}
    assert "3 Success" in count.toolTip()
    assert count.fill == merge.fill == STATE_COLORS["Success"]
    assert merge.run_text is None

    dialog = watcher.open_node_jobs(count.node_id)
    assert dialog is not None
    await until(lambda: dialog.table.rowCount() == 3, what="the scatter's jobs")
    listed = [dialog.table.item(row, 1).text() for row in range(3)]
    assert listed == ["count.a", "count.b", "count.c"]
    await until(lambda: "counting a" in dialog.detail.log_view.toPlainText(), what="the log")
    dialog.table.selectRow(2)
    await until(lambda: "counting c" in dialog.detail.log_view.toPlainText(), what="c's log")
    assert not window.modified


async def test_failure_colours_double_click_lists_the_jobs_and_a_retry_runs_again(
    window: CanvasWindow,
    watcher: RunWatcher,
    service: EngineService,
    bridge: EngineBridge,
    tmp_path: Path,
) -> None:
    batch_id = await _open_and_submit(window, service, example(tmp_path, "failure.yaml"))
    ended: list[str] = []
    watcher.batch_finished.connect(ended.append)
    watcher.watch(batch_id)
    await until(lambda: watcher.finished, what="the batch to end")
    assert ended == ["failure"]
    flaky = node(window, "flaky")
    assert flaky.fill == STATE_COLORS["Failed"]
    assert node(window, "after-flaky").fill == STATE_COLORS["Cancelled"]
    assert node(window, "independent").fill == STATE_COLORS["Success"]
    assert _body_color(window, flaky) == STATE_COLORS["Failed"]

    # a double click on the failed node lists its job, with its exit code and log
    QTest.mouseDClick(window.view.viewport(), LEFT, NO_KEYS, point(window.view, flaky))
    dialog = watcher.dialogs[flaky.node_id]
    assert dialog.isVisible() and not dialog.isModal()
    await until(lambda: dialog.table.rowCount() == 1, what="flaky's job")
    row = [dialog.table.item(0, column).text() for column in range(5)]
    assert row[1:] == ["flaky", "Failed", "3", "1"]
    await until(lambda: "about to fail" in dialog.detail.log_view.toPlainText(), what="log")
    assert dialog.detail.attempts_table.rowCount() == 1
    assert not window.modified  # a double click while watching edits nothing

    # the context menu of a healthy node offers no retry of it, a failed node's does
    menu = watcher.node_menu(node(window, "independent").node_id)
    assert not _action(menu.actions(), "Retry").isEnabled()
    assert _action(menu.actions(), "Retry all failed jobs of the batch").isEnabled()
    retried: list[int] = []
    watcher.retried.connect(retried.append)
    _action(watcher.node_menu(flaky.node_id).actions(), "Retry with twice the memory").trigger()
    await until(lambda: retried, what="the retry")
    assert retried == [2]  # flaky and the job its failure cancelled
    assert not watcher.finished
    await until(lambda: len(ended) == 2, what="the retried batch to end")
    (job_id,) = watcher.node_jobs(flaky.node_id)
    detail = await service.job_detail(batch_id, job_id)
    assert len(detail.attempts) == 2 and detail.job.state == "Failed"
    assert flaky.fill == STATE_COLORS["Failed"]
    await until(lambda: dialog.table.item(0, 4).text() == "2", what="the second attempt")
    assert not window.modified and window.undo_stack.count() == 0


async def test_hover_says_why_a_job_waits_and_a_retry_of_a_running_batch_is_refused(
    window: CanvasWindow,
    watcher: RunWatcher,
    service: EngineService,
    bridge: EngineBridge,
    tmp_path: Path,
) -> None:
    batch_id = await _open_and_submit(window, service, _write(tmp_path, "w.yaml", WAITING_DAG))
    watcher.watch(batch_id)
    slow, after, broken = (node(window, n) for n in ("slow", "after-slow", "broken"))
    await until(
        lambda: slow.fill == STATE_COLORS["Running"] and broken.fill == STATE_COLORS["Failed"],
        what="slow running and broken failed",
    )
    assert after.fill == STATE_COLORS["Pending"]

    at = point(window.view, after)
    viewport = window.view.viewport()
    hover = QHelpEvent(QEvent.Type.ToolTip, at, viewport.mapToGlobal(at))
    QApplication.sendEvent(viewport, hover)
    await until(lambda: "waiting for 1 parent job" in after.toolTip(), what="why it waits")
    assert after.toolTip().startswith("after-slow — Pending\n1 Pending")

    messages: list[str] = []
    bridge.user_error.connect(messages.append)
    watcher.retry_node(broken.node_id)
    await until(lambda: messages, what="the refusal")
    assert "still running" in messages[0]
    assert not watcher.finished and watcher.batch_id == batch_id

    await service.cancel_batch(batch_id)
    await until(lambda: watcher.finished, what="the cancelled batch to end")
    assert after.fill == STATE_COLORS["Cancelled"]
    assert not window.modified


async def test_opening_another_file_stops_watching(
    window: CanvasWindow, watcher: RunWatcher, service: EngineService, tmp_path: Path
) -> None:
    batch_id = await _open_and_submit(window, service, example(tmp_path, "diamond.yaml"))
    watcher.watch(batch_id)
    await until(lambda: watcher.finished, what="the batch to end")
    assert window.open_file(example(tmp_path, "failure.yaml"))
    assert watcher.batch_id is None
    assert all(item.fill is None for item in window.scene.node_items.values())
    assert watcher.open_node_jobs(node(window, "flaky").node_id) is None
    QTest.mouseDClick(window.view.viewport(), LEFT, NO_KEYS, QPoint(5, 5))
    assert not watcher.dialogs


@pytest.mark.parametrize(
    ("counts", "state", "progress"),
    [
        (
            {"Success": 37, "Running": 5, "Failed": 2, "Pending": 56},
            "Running",
            "37/100 done, 2 failed",
        ),
        ({"Success": 3, "Creating": 1}, "Running", "3/4 done"),
        ({"Success": 2, "Failed": 1, "Ready": 1}, "Failed", "2/4 done, 1 failed"),
        ({"Success": 2, "Error": 1}, "Error", "2/3 done, 1 failed"),
        ({"Success": 1, "Ready": 2, "Pending": 1}, "Ready", "1/4 done"),
        ({"Pending": 3}, "Pending", "0/3 done"),
        ({"Success": 3}, "Success", "3/3 done"),
        ({"Success": 1, "Cancelled": 2}, "Cancelled", "1/3 done, 2 cancelled"),
        ({"Cancelled": 1}, "Cancelled", "0/1 done, 1 cancelled"),
        ({}, None, "0/0 done"),
    ],
)
def test_the_state_and_progress_of_a_node_from_its_jobs(
    counts: dict[str, int], state: str | None, progress: str
) -> None:
    assert node_state(counts) == state
    assert progress_text(counts) == progress
