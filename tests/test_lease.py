"""A lab sharing one PostgreSQL database: one driver at a time, and failover on SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from app.engine import lease
from app.models.db import open_database
from tests.conftest import run_in_thread
from tests.test_cli import chain_dag, labbatch, start, status, wait_for, worker_pids

pytestmark = pytest.mark.postgres


def holder(url: str) -> str | None:
    async def read() -> str | None:
        db = await open_database(url, migrate=False)
        try:
            return await lease.current_holder(db)
        finally:
            await db.close()

    return run_in_thread(read())


def test_standby_takes_over_within_10s_without_double_running(
    pg_url: str, lb_home: Path, tmp_path: Path
) -> None:
    ran = tmp_path / "ran.txt"
    dag = chain_dag(tmp_path, ran, n=10, sleep_s=0.4)
    assert labbatch("submit", str(dag), "--db", pg_url).returncode == 0

    first = start("serve", "--db", pg_url)
    wait_for(lambda: f":{first.pid}:" in (holder(pg_url) or ""), what="the first driver's lease")
    second = start("serve", "--db", pg_url)
    try:
        wait_for(lambda: ran.exists() and len(ran.read_text().split()) >= 3, what="3 jobs")
        assert f":{first.pid}:" in (holder(pg_url) or "")  # the standby only waits
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        killed_at = time.monotonic()
        wait_for(
            lambda: f":{second.pid}:" in (holder(pg_url) or ""),
            timeout_s=12,
            what="the standby to take the lease",
        )
        takeover_s = time.monotonic() - killed_at
        assert takeover_s <= 10, f"takeover took {takeover_s:.1f}s"
        wait_for(lambda: status(1, pg_url)["complete"], timeout_s=40, what="the batch")
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    assert status(1, pg_url)["state"] == "success"
    assert ran.read_text().split() == [f"j{i}" for i in range(10)]  # none lost, none twice
    wait_for(lambda: worker_pids(lb_home) == [], timeout_s=10, what="workers to exit")


async def test_only_one_process_holds_the_lease(pg_url: str) -> None:
    db = await open_database(pg_url)
    try:
        results = await asyncio.gather(*(lease.try_acquire(db, f"p{i}") for i in range(8)))
        assert sum(results) == 1
        winner = f"p{results.index(True)}"
        assert await lease.current_holder(db) == winner
        assert not await lease.try_acquire(db, "late")
        await lease.release(db, winner)
        assert await lease.try_acquire(db, "late")
    finally:
        await db.close()
