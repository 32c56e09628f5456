"""The batches list: rows from the real engine, filters, kept selection, and batch actions."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from app.engine.batches import frontend
from app.models.spec import parse_dag_text
from app.views import style
from app.views.batches import DELETE_TEXT, EMPTY_TEXT, NO_MATCH_TEXT, BatchesPanel
from app.views.batches_model import BATCH_ID_ROLE, COLUMNS
from app.views.bridge import EngineBridge
from tests.views.conftest import EXAMPLES, until

SLEEPER = """
version: 1
name: long-sleep
jobs:
  - {name: nap, command: sleep 30, cpu: 0.5}
  - {name: after, command: echo done, depends_on: [nap]}
"""


def _quick(name: str, command: str = "true") -> Any:
    text = f"version: 1\nname: {name}\njobs:\n  - {{name: a, command: '{command}', cpu: 0.25}}\n"
    return parse_dag_text(text, source="t.yaml")


@pytest.fixture
async def panel(bridge: EngineBridge, qtbot: QtBot) -> AsyncIterator[BatchesPanel]:
    """A shown panel; closed at the end, once its engine calls have returned."""
    widget = BatchesPanel(bridge)
    qtbot.addWidget(widget)
    widget.resize(1000, 500)
    widget.show()
    yield widget
    if shiboken6.isValid(widget):  # pytest-qt may have closed and deleted it already
        widget.close()
    # a read cancelled by the bridge's close would leave its SQLite transaction open
    await until(lambda: bridge.n_pending_calls == 0, what="the panel's engine calls")
    gc.collect()  # here, on the Qt thread, not in whichever thread next allocates


def _rows(panel: BatchesPanel) -> list[dict[str, str]]:
    """What the table shows, top to bottom, as column name -> text."""
    model = panel.table.model()
    return [
        {name: str(model.index(r, c).data()) for c, name in enumerate(COLUMNS)}
        for r in range(model.rowCount())
    ]


def _names(panel: BatchesPanel) -> list[str]:
    return [row["Name"] for row in _rows(panel)]


def _index(panel: BatchesPanel, batch_id: int, column: str) -> QModelIndex:
    model = panel.table.model()
    for r in range(model.rowCount()):
        if model.index(r, 0).data(BATCH_ID_ROLE) == batch_id:
            return model.index(r, COLUMNS.index(column))
    raise AssertionError(f"batch {batch_id} is not listed")


def _text(panel: BatchesPanel, batch_id: int, column: str) -> str:
    try:
        return str(_index(panel, batch_id, column).data())
    except AssertionError:
        return ""


async def _until_engine(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout_s: float = 20.0
) -> None:
    """Poll an engine query until it holds."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.1)


async def _run_examples(bridge: EngineBridge, *names: str) -> list[int]:
    """Submit example DAGs and wait until they have all finished."""
    finished: set[int] = set()
    bridge.batch_finished.connect(lambda event: finished.add(event.batch_id))
    ids = [await bridge.service.submit(await bridge.service.load_dag(EXAMPLES / n)) for n in names]
    await until(lambda: set(ids) <= finished, timeout_s=40, what="the batches to finish")
    return ids


async def test_rows_show_the_engines_batches(bridge: EngineBridge, panel: BatchesPanel) -> None:
    await until(lambda: panel.empty_hint.isVisible(), what="the empty hint")
    assert panel.empty_hint.text() == EMPTY_TEXT
    assert not panel.table.isVisible()

    diamond, failure = await _run_examples(bridge, "diamond.yaml", "failure.yaml")
    await until(
        lambda: (
            _text(panel, failure, "State") == "failure"
            and _text(panel, diamond, "State") == "success"
        ),
        what="both batches finished in the list",
    )
    assert panel.table.isVisible() and not panel.empty_hint.isVisible()
    assert _names(panel) == ["failure-propagation", "diamond"]  # newest first
    costs = {
        r.batch.id: r.cost_usd for r in await bridge.service.find_batches(panel.current_filter())
    }
    row = _rows(panel)[1]
    assert row["ID"] == str(diamond)
    assert (row["User"], row["Progress"], row["Cost"]) == (
        "tester",
        "4/4",
        style.usd(costs[diamond]),
    )
    assert row["Created"] and row["Duration"].endswith("s")

    state = _index(panel, diamond, "State")
    assert state.data(Qt.ItemDataRole.BackgroundRole).color() == style.state_color("success")
    red = _index(panel, failure, "State").data(Qt.ItemDataRole.BackgroundRole).color()
    assert red == style.state_color("failure")
    tip = _index(panel, failure, "Progress").data(Qt.ItemDataRole.ToolTipRole)
    assert "1 failed" in tip and "4 of 4" in tip
    assert _index(panel, diamond, "Name").data(Qt.ItemDataRole.ToolTipRole) == "purpose=example"
    assert not panel.grab().isNull()  # paints, progress bars included

    panel.table.sortByColumn(COLUMNS.index("Name"), Qt.SortOrder.AscendingOrder)
    assert _names(panel) == ["diamond", "failure-propagation"]


async def test_filters_by_state_name_and_attribute(
    bridge: EngineBridge, panel: BatchesPanel, qtbot: QtBot
) -> None:
    await _run_examples(bridge, "diamond.yaml", "failure.yaml")
    await until(lambda: len(_rows(panel)) == 2, what="two rows")

    panel.state_filter.setCurrentIndex(panel.state_filter.findText("failure"))
    await until(lambda: _names(panel) == ["failure-propagation"], what="the failed batch only")
    panel.state_filter.setCurrentIndex(panel.state_filter.findText("running"))
    await until(lambda: panel.empty_hint.isVisible(), what="no running batch")
    assert panel.empty_hint.text() == NO_MATCH_TEXT
    panel.state_filter.setCurrentIndex(0)  # All
    await until(lambda: len(_rows(panel)) == 2, what="both again")

    qtbot.keyClicks(panel.search, "diam")
    assert len(_rows(panel)) == 2  # applied once typing pauses, not on every key
    await until(lambda: _names(panel) == ["diamond"], what="the name search")
    panel.search.setText("purpose=example")
    await until(lambda: _names(panel) == ["diamond"], what="the attribute search")
    panel.search.setText("purpose=other")
    await until(lambda: not _rows(panel), what="no attribute match")
    panel.search.clear()
    await until(lambda: len(_rows(panel)) == 2, what="both again")


async def test_all_users_shows_other_users_batches(
    bridge: EngineBridge, panel: BatchesPanel
) -> None:
    mine = await bridge.service.submit(_quick("mine"))
    theirs = await frontend.submit_batch(bridge.service.db, _quick("theirs"), user="other")
    await until(lambda: _names(panel) == ["mine"], what="only my batch")
    assert panel.current_filter().user == "tester"
    assert not panel.user_filter.isVisible()

    panel.all_users.setChecked(True)
    await until(lambda: _names(panel) == ["theirs", "mine"], what="every user's batches")
    assert panel.user_filter.isVisible()
    assert _text(panel, theirs, "User") == "other"
    assert panel.select_batch(theirs)
    assert panel.open_action.isEnabled()
    assert not panel.delete_action.isEnabled() and not panel.retry_action.isEnabled()
    panel.user_filter.setText("other")
    await until(lambda: _names(panel) == ["theirs"], what="one user's batches")
    panel.all_users.setChecked(False)
    await until(lambda: _names(panel) == ["mine"], what="only mine again")
    assert _text(panel, mine, "User") == "tester"


async def test_selection_scroll_and_in_place_updates_survive_refreshes(
    bridge: EngineBridge, panel: BatchesPanel
) -> None:
    panel.resize(1000, 180)
    ids = [await bridge.service.submit(_quick(f"b{i:02}")) for i in range(8)]
    await until(lambda: len(_rows(panel)) == 8, what="8 rows")
    await until(
        lambda: all(_text(panel, i, "Progress") == "1/1" for i in ids), what="every batch done"
    )
    resets: list[None] = []
    changes: list[None] = []
    panel.model.modelReset.connect(lambda: resets.append(None))
    panel.model.dataChanged.connect(lambda *_: changes.append(None))
    bar = panel.table.verticalScrollBar()
    assert bar.maximum() > 0
    assert panel.select_batch(ids[0])  # the oldest: the last row
    bar.setValue(bar.maximum())
    scroll = bar.value()

    refreshes: list[None] = []
    panel.refreshed.connect(lambda: refreshes.append(None))
    panel.refresh()
    await until(lambda: refreshes, what="a refresh")
    assert not resets  # same batches: nothing reset
    assert (panel.selected_batch_id, bar.value()) == (ids[0], scroll)

    new = await bridge.service.submit(_quick("new", "sleep 2"))
    await until(lambda: _text(panel, new, "Progress") == "0/1", what="the new batch")
    assert len(resets) == 1
    assert (panel.selected_batch_id, bar.value()) == (ids[0], scroll)
    await until(lambda: _text(panel, new, "Progress") == "1/1", what="the new batch done")
    assert len(resets) == 1 and changes  # its progress arrived in place


async def test_open_by_double_click_and_enter(
    bridge: EngineBridge, panel: BatchesPanel, qtbot: QtBot
) -> None:
    batch_id = await bridge.service.submit(_quick("one"))
    await until(lambda: _names(panel) == ["one"], what="the row")
    assert not panel.open_action.isEnabled()  # nothing selected yet
    opened: list[int] = []
    panel.batch_opened.connect(opened.append)

    rect = panel.table.visualRect(_index(panel, batch_id, "Name"))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened == [batch_id]
    panel.activateWindow()
    panel.table.setFocus()
    await until(lambda: panel.table.hasFocus(), what="the table to have the focus")
    qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    assert opened == [batch_id, batch_id]

    assert "(Ctrl+K)" in panel.cancel_action.toolTip()
    assert "(Del" in panel.delete_action.toolTip()
    menu = panel.context_menu.actions()
    for action in (panel.open_action, panel.cancel_action, panel.retry_action, panel.delete_action):
        assert action in menu and action in panel.toolbar.actions()


async def test_cancel_a_running_batch_asks_first(bridge: EngineBridge, panel: BatchesPanel) -> None:
    batch_id = await bridge.service.submit(parse_dag_text(SLEEPER, source="t.yaml"))
    await until(lambda: _text(panel, batch_id, "State") == "running", what="the running batch")
    first = _text(panel, batch_id, "Duration")
    await until(lambda: _text(panel, batch_id, "Duration") != first, what="the duration to count")
    assert panel.select_batch(batch_id)
    assert panel.cancel_action.isEnabled() and panel.delete_action.isEnabled()
    assert not panel.retry_action.isEnabled()

    asked: list[str] = []

    def refuse(parent: QWidget, title: str, text: str) -> bool:
        asked.append(text)
        return False

    panel.confirm = refuse
    panel.cancel_action.trigger()
    assert asked and f"Cancel batch {batch_id} 'long-sleep'?" in asked[0]
    assert not (await bridge.service.batch(batch_id)).batch.cancelled

    panel.confirm = lambda parent, title, text: True
    panel.cancel_action.trigger()
    await until(lambda: _text(panel, batch_id, "State") == "cancelled", what="the cancelled batch")
    row = await bridge.service.batch(batch_id)
    assert row.batch.cancelled and row.batch.state == "cancelled"
    assert panel.selected_batch_id == batch_id
    assert not panel.cancel_action.isEnabled()
    assert panel.retry_action.isEnabled()  # its jobs ended Cancelled


async def test_retry_failed_jobs(bridge: EngineBridge, panel: BatchesPanel) -> None:
    diamond, failure = await _run_examples(bridge, "diamond.yaml", "failure.yaml")
    await until(lambda: _text(panel, failure, "State") == "failure", what="the failed batch")
    panel.select_batch(diamond)
    assert not panel.retry_action.isEnabled()  # nothing failed
    panel.select_batch(failure)
    assert panel.retry_action.isEnabled() and not panel.cancel_action.isEnabled()

    panel.retry_action.trigger()
    # flaky, and after-flaky that it held back
    await until(lambda: "2 jobs run again" in panel.status.text(), what="the retry")

    async def ran_again() -> bool:
        flaky = await bridge.service.job_detail(failure, "flaky")
        return len(flaky.attempts) == 2 and flaky.job.state == "Failed"

    await _until_engine(ran_again, what="flaky to run and fail again")
    assert (await bridge.service.batch(failure)).batch.state == "failure"
    await until(
        lambda: (
            _text(panel, failure, "State") == "failure"
            and _text(panel, failure, "Progress") == "3/4 · 1 cancelled"
        ),
        what="the retried batch to fail again",
    )
    assert panel.retry_action.isEnabled()


async def test_delete_asks_and_removes_the_batch(
    bridge: EngineBridge, panel: BatchesPanel, monkeypatch: pytest.MonkeyPatch
) -> None:
    (diamond,) = await _run_examples(bridge, "diamond.yaml")
    await until(lambda: _text(panel, diamond, "State") == "success", what="the finished batch")
    panel.select_batch(diamond)
    deleted: list[int] = []
    panel.batch_deleted.connect(deleted.append)
    asked: list[str] = []
    answer = QMessageBox.StandardButton.Cancel

    def question(parent: QWidget, title: str, text: str, *args: object) -> Any:
        asked.append(text)
        return answer

    monkeypatch.setattr(QMessageBox, "question", question)
    panel.delete_action.trigger()
    assert asked == [DELETE_TEXT.format(id=diamond, name="diamond")]
    assert "its cost stays in the spend figures" in asked[0]
    assert [r.batch.id for r in await bridge.service.find_batches(panel.current_filter())] == [
        diamond
    ]

    answer = QMessageBox.StandardButton.Yes
    panel.delete_action.trigger()
    await until(lambda: panel.empty_hint.isVisible(), what="the row to go")
    assert deleted == [diamond]
    assert await bridge.service.find_batches(panel.current_filter()) == []
    assert "deleted" in panel.status.text()
    assert panel.selected_batch_id is None and not panel.delete_action.isEnabled()
