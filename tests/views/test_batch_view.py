"""One batch's panel on the real engine: rows and colours, the state filter, a job's spec,
attempts, why and live log, and a large batch that loads only the pages a user looks at."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator

import pytest
import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.engine.service import EngineService
from app.models.spec import BatchSpec, JobSpec, parse_dag_text
from app.views import style
from app.views.batch_view import BatchPanel
from app.views.bridge import EngineBridge
from app.views.job_detail import TAB_LOG
from app.views.jobs_model import (
    COL_EXIT,
    COL_ID,
    COL_NAME,
    COL_STATE,
    COL_WORKER,
    MAX_PAGES,
    PAGE_SIZE,
    PLACEHOLDER,
    JobTableModel,
)
from tests.views.conftest import EXAMPLES, until


@pytest.fixture(autouse=True)
def collect_garbage_on_the_main_thread() -> None:
    """Collect the previous test's garbage (its closed qasync loop) here, on the main thread.

    Otherwise Python may collect it on an engine worker thread; a QObject deleted there cannot
    stop its Qt timers, and the next timer event reaches freed memory (a segfault).
    """
    gc.collect()


@pytest.fixture
async def panel(bridge: EngineBridge) -> AsyncIterator[BatchPanel]:
    p = BatchPanel(bridge)
    p.resize(1000, 800)
    p.show()
    yield p
    p.close()
    # let the reads in flight end: a read cancelled by the bridge's close can keep SQLite locked
    await until(lambda: bridge.n_pending_calls == 0, what="the panel's calls to end")
    shiboken6.delete(p)  # now, on this thread, with its timers


def cell(
    model: JobTableModel,
    row: int,
    column: int,
    role: Qt.ItemDataRole = Qt.ItemDataRole.DisplayRole,
) -> object:
    return model.data(model.index(row, column), role)


def column_texts(model: JobTableModel, column: int) -> list[object]:
    return [cell(model, row, column) for row in range(model.rowCount())]


async def finished(service: EngineService, batch_id: int) -> None:
    deadline = time.monotonic() + 30
    while not (await service.batch(batch_id)).batch.complete:
        assert time.monotonic() < deadline, f"batch {batch_id} did not finish"
        await asyncio.sleep(0.1)


async def test_a_finished_diamond_shows_its_jobs_and_the_merge_job_in_detail(
    bridge: EngineBridge, panel: BatchPanel
) -> None:
    service = bridge.service
    batch_id = await service.submit(await service.load_dag(EXAMPLES / "diamond.yaml"))
    panel.show_batch(batch_id)
    model = panel.model
    await until(lambda: model.rowCount() == 4, what="four rows")
    await until(
        lambda: column_texts(model, COL_STATE) == ["Success"] * 4,
        what="every job to show Success",
    )
    assert column_texts(model, COL_NAME) == ["prepare", "left", "right", "merge"]
    assert column_texts(model, COL_ID) == ["1", "2", "3", "4"]
    assert column_texts(model, COL_EXIT) == ["0"] * 4
    color = cell(model, 0, COL_STATE, Qt.ItemDataRole.ForegroundRole)
    assert color == style.state_color("Success")
    assert all(str(worker).startswith("local") for worker in column_texts(model, COL_WORKER))
    await until(lambda: "4/4 done" in panel.header.text(), what="the header's progress")
    header = panel.header.text()
    assert f"Batch {batch_id}" in header and "diamond" in header and "tester" in header
    assert "success" in header and "0 failed" in header

    panel.table.selectRow(3)  # as a click on the merge row
    detail = panel.detail
    assert detail.job_id == 4
    await until(lambda: "depends_on" in detail.spec_view.toPlainText(), what="the spec")
    spec = detail.spec_view.toPlainText()
    assert "name: merge" in spec and "- left" in spec and "- right" in spec
    assert 'cat "$LABBATCH_BATCH_DIR/left.txt"' in spec
    await until(lambda: detail.attempts_table.rowCount() == 1, what="one attempt")
    assert detail.attempts_table.item(0, 0).text() == "1"
    assert detail.attempts_table.item(0, 1).text().startswith("local")
    await until(lambda: "ecnerefer" in detail.log_view.toPlainText(), what="merge's log")
    assert detail.log_view.toPlainText() == "REFERENCE\necnerefer\n"
    assert detail.log_view.isReadOnly()
    await until(lambda: not detail.following, what="the log to stop being polled")
    assert "is Success" in detail.why_view.toPlainText()


async def test_the_state_filter_shows_only_jobs_in_that_state(
    bridge: EngineBridge, panel: BatchPanel
) -> None:
    service = bridge.service
    batch_id = await service.submit(await service.load_dag(EXAMPLES / "failure.yaml"))
    await finished(service, batch_id)
    panel.show_batch(batch_id)
    model = panel.model
    await until(lambda: model.rowCount() == 4 and cell(model, 3, COL_NAME) != PLACEHOLDER)

    panel.state_filter.setCurrentText("Failed")
    await until(lambda: model.rowCount() == 1 and cell(model, 0, COL_NAME) == "flaky")
    assert cell(model, 0, COL_EXIT) == "3"
    assert cell(model, 0, COL_STATE, Qt.ItemDataRole.ForegroundRole) == style.state_color("Failed")
    panel.state_filter.setCurrentText("Success")
    await until(lambda: model.rowCount() == 2 and cell(model, 1, COL_NAME) != PLACEHOLDER)
    assert column_texts(model, COL_NAME) == ["report", "independent"]
    panel.state_filter.setCurrentText("Running")
    await until(lambda: not model.busy)
    assert model.rowCount() == 0
    panel.state_filter.setCurrentText("All")
    await until(lambda: model.rowCount() == 4 and cell(model, 3, COL_NAME) != PLACEHOLDER)
    assert column_texts(model, COL_STATE) == ["Failed", "Cancelled", "Success", "Success"]
    await until(lambda: "1 failed" in panel.header.text(), what="the failed count")


async def test_a_running_jobs_log_follows_live(bridge: EngineBridge, panel: BatchPanel) -> None:
    service = bridge.service
    spec = parse_dag_text(
        "version: 1\nname: talker\njobs:\n  - name: talk\n"
        '    command: "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done"\n',
        source="t.yaml",
    )
    batch_id = await service.submit(spec)
    panel.show_batch(batch_id)
    panel.select_job(1)
    detail = panel.detail
    detail.tabs.setCurrentIndex(TAB_LOG)
    assert detail.following
    await until(lambda: "line 1" in detail.log_view.toPlainText(), what="the first line")
    assert "line 6" not in detail.log_view.toPlainText()
    assert (await service.job_detail(batch_id, 1)).job.state == "Running"
    assert detail.log_at_bottom
    await until(lambda: not detail.following, what="the log to end")
    assert detail.log_view.toPlainText() == "".join(f"line {i}\n" for i in range(1, 7))
    assert (await service.job_detail(batch_id, 1)).job.state == "Success"
    await until(lambda: cell(panel.model, 0, COL_STATE) == "Success", what="the row's state")
    assert panel.table.currentIndex().row() == 0


async def test_a_waiting_job_says_why_and_polling_stops_when_hidden(
    bridge: EngineBridge, panel: BatchPanel
) -> None:
    service = bridge.service
    spec = parse_dag_text(
        "version: 1\nname: gated\njobs:\n  - name: gate\n    command: sleep 60\n"
        "  - name: after\n    depends_on: [gate]\n    command: echo done\n",
        source="t.yaml",
    )
    batch_id = await service.submit(spec)
    panel.show_batch(batch_id)
    await until(lambda: cell(panel.model, 1, COL_NAME) == "after", what="the rows")
    panel.table.selectRow(1)
    detail = panel.detail
    await until(lambda: "waiting for 1 parent" in detail.why_view.toPlainText(), what="why")
    assert "gate" in detail.why_view.toPlainText()
    await until(lambda: "job after is Pending" in detail.log_note.text(), what="the note")
    assert detail.following

    panel.hide()
    await until(lambda: bridge.n_pending_calls == 0, what="the calls in flight")
    assert not detail.polling and detail.following
    detail.why_view.setPlainText("")
    await asyncio.sleep(2.5)  # longer than the detail's poll
    assert detail.why_view.toPlainText() == "" and not detail.polling
    panel.show()
    assert detail.polling
    await until(lambda: "waiting for 1 parent" in detail.why_view.toPlainText(), what="again")
    panel.table.selectRow(0)
    await until(lambda: "is Running" in detail.why_view.toPlainText(), what="the gate's why")
    await service.cancel_batch(batch_id)
    await until(lambda: cell(panel.model, 1, COL_STATE) == "Cancelled", what="the cancel")


def big_spec(n: int) -> BatchSpec:
    """A gate that sleeps and ``n - 1`` jobs that wait for it (they stay Pending)."""
    gate = JobSpec(name="gate", command="sleep 60")
    return BatchSpec(
        name="big",
        jobs=(
            gate,
            *(JobSpec(name=f"j{i}", command="true", depends_on=("gate",)) for i in range(1, n)),
        ),
    )


async def test_a_large_batch_loads_only_the_pages_shown(
    bridge: EngineBridge, panel: BatchPanel
) -> None:
    n = 20_000
    service = bridge.service
    batch_id = await service.submit(big_spec(n))
    model = panel.model
    started = time.monotonic()
    panel.show_batch(batch_id)
    await until(lambda: model.rowCount() == n, what="the count")
    await until(lambda: cell(model, 0, COL_NAME) == "gate", what="the first page")
    assert time.monotonic() - started < 2.0
    assert model.n_loaded_rows <= 2 * PAGE_SIZE < n
    assert cell(model, n - 1, COL_NAME) == PLACEHOLDER  # and asks for the last page

    panel.table.scrollToBottom()
    await until(lambda: cell(model, n - 1, COL_NAME) == f"j{n - 1}", what="the last rows")
    assert cell(model, n - 1, COL_STATE) == "Pending"
    assert model.n_loaded_rows <= 4 * PAGE_SIZE

    # selection and scroll position survive a live refresh
    panel.table.selectRow(n - 2)
    bar = panel.table.verticalScrollBar()
    position = bar.value()
    fetches = model.n_page_fetches
    panel.refresh()
    await until(lambda: model.n_page_fetches > fetches and not model.busy, what="a refresh")
    assert bar.value() == position and panel.table.currentIndex().row() == n - 2
    assert panel.detail.job_id == n - 1

    # however far a user scrolls, at most MAX_PAGES pages stay in memory
    for page in range(0, n // PAGE_SIZE + 1):
        cell(model, page * PAGE_SIZE, COL_NAME)
    await until(lambda: not model.busy, what="every page")
    assert model.n_loaded_pages == MAX_PAGES
    assert model.n_loaded_rows <= MAX_PAGES * PAGE_SIZE < n

    await service.cancel_batch(batch_id)
    await until(lambda: cell(model, n - 1, COL_STATE) == "Cancelled", what="the cancel")


async def test_a_cancelled_batch_whose_jobs_never_ran_does_not_read_done(
    bridge: EngineBridge, panel: BatchPanel
) -> None:
    service = bridge.service
    batch_id = await service.submit(big_spec(50))
    await service.cancel_batch(batch_id)
    await finished(service, batch_id)
    panel.show_batch(batch_id)
    await until(lambda: "cancelled" in panel.header.text(), what="the header")
    header = panel.header.text()
    assert "50/50 done" not in header and "50 cancelled" in header
    assert panel.progress.value() < 50 and "cancelled" in panel.progress.format()


async def test_ctrl_end_shows_the_last_job_in_detail(
    bridge: EngineBridge, panel: BatchPanel
) -> None:
    n = 2_000
    service = bridge.service
    batch_id = await service.submit(big_spec(n))
    panel.show_batch(batch_id)
    model = panel.model
    await until(lambda: cell(model, 0, COL_NAME) == "gate", what="the first page")
    panel.table.setFocus()
    panel.table.selectRow(0)
    assert panel.detail.job_id == 1
    QTest.keyClick(panel.table, Qt.Key.Key_End, Qt.KeyboardModifier.ControlModifier)
    assert panel.table.currentIndex().row() == n - 1
    await until(lambda: panel.detail.job_id == n, what="the last job's detail")

    panel.state_filter.setCurrentText("Pending")  # filtered: job ids no longer follow rows
    await until(lambda: model.rowCount() == n - 1 and not model.busy, what="the pending jobs")
    panel.table.selectRow(0)
    QTest.keyClick(panel.table, Qt.Key.Key_End, Qt.KeyboardModifier.ControlModifier)
    await until(lambda: panel.detail.job_id == n, what="the last pending job's detail")
    await service.cancel_batch(batch_id)
