"""The dashboard's "Worker file cache" table: what each worker's input cache holds and saved."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot
from sqlalchemy import update

from app.engine.service import EngineService
from app.models.spec import parse_dag_text
from app.models.tables import Attempt
from app.views.bridge import EngineBridge
from app.views.dashboard import DashboardPanel
from app.views.dashboard_files import CACHE_COLUMNS
from tests.views.conftest import until

pytestmark = pytest.mark.timeout(120)
ONE_JOB = "version: 1\nname: one\njobs:\n  - {name: a, command: 'true', cpu: 0.5}\n"


def _live_worker(service: EngineService) -> str:
    assert service.runtime is not None
    names = list(service.runtime.driver.instances)
    return names[0] if names else ""


async def test_the_table_shows_each_workers_cache_hits_and_bytes_saved(
    bridge: EngineBridge, qtbot: QtBot
) -> None:
    service = bridge.service
    panel = DashboardPanel(bridge)
    qtbot.addWidget(panel)
    panel.resize(1000, 1100)
    panel.show()
    table = panel.worker_caches
    assert (
        tuple(table.table.horizontalHeaderItem(c).text() for c in range(table.table.columnCount()))
        == CACHE_COLUMNS
    )

    finished: list[object] = []
    bridge.batch_finished.connect(finished.append)
    batch_id = await service.submit(parse_dag_text(ONE_JOB, source="t.yaml"))
    await until(lambda: finished, timeout_s=30, what="the batch to finish")
    worker = _live_worker(service)
    await until(lambda: [r[1] for r in table.rows()] == [worker], what="the worker's row")
    assert table.rows() == [["local", worker, "0 B", "0", "0", "0 B"]]

    # the engine learns what the worker's cache holds (its heartbeat) and what the job's
    # attempt linked from it (its transfer figures). The first beat after the hello always
    # carries the cache (empty here): one landing after the figures below would wipe them
    # (this failed under load, when the batch finished within a beat of the hello)
    assert service.runtime is not None
    inst = service.runtime.driver.instances[worker]
    beat_at = inst.last_heartbeat
    await until(lambda: inst.last_heartbeat != beat_at, what="a heartbeat of the worker")
    inst.cached_inputs = {
        "gs://lab/ref.fa": 200_000_000,
        "gs://lab/ref.fa.fai": 3_000,
    }
    staging = {"in_bytes": 400_003_000, "cache_hits": 2, "cache_bytes_saved": 400_000_000}
    await service.db.run(
        lambda conn: conn.execute(
            update(Attempt).where(Attempt.batch_id == batch_id).values(staging=staging)
        )
    )
    table.refresh()
    await until(
        lambda: table.rows() == [["local", worker, "200 MB", "2", "2", "400 MB"]],
        what="the cache figures",
    )
    assert table.total.text() == "2 cache hits, 400 MB not downloaded on 1 live worker"
