"""The job detail panel shows what a job with files moved."""

from __future__ import annotations

import gc
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import shiboken6

from app.views.batch_view import BatchPanel
from app.views.bridge import EngineBridge
from tests.views.conftest import EXAMPLES, until


@pytest.fixture(autouse=True)
def collect_garbage_on_the_main_thread() -> None:
    """Collect an earlier test's qasync loop here, on the main thread (see test_batch_view)."""
    gc.collect()


@pytest.fixture
async def panel(bridge: EngineBridge) -> AsyncIterator[BatchPanel]:
    p = BatchPanel(bridge)
    p.resize(1000, 800)
    p.show()
    yield p
    p.close()
    await until(lambda: bridge.n_pending_calls == 0, what="the panel's calls to end")
    shiboken6.delete(p)


async def test_the_detail_of_a_job_with_files_says_what_it_moved(
    bridge: EngineBridge, panel: BatchPanel, tmp_path: Path
) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    service = bridge.service
    batch_id = await service.submit(await service.load_dag(tmp_path / "examples" / "files.yaml"))
    panel.show_batch(batch_id)
    await until(lambda: panel.model.rowCount() == 3, what="three rows")
    panel.table.selectRow(2)  # as a click on the report row
    detail = panel.detail
    await until(lambda: "Success" in detail.title.text(), what="the report to succeed")
    await until(lambda: "files in" in detail.title.text(), what="the transfer figures")
    assert "linked" in detail.title.text()
    assert (tmp_path / "examples" / "results" / "summary.txt").exists()
