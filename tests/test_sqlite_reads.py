"""SQLite reads on reader threads: a front end that cancels its reads (the desktop leaving a page,
a closed dialog) must not leak connections, and many reads at once must not lock up."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from sqlalchemy import select

from app.models.db import ThreadEngine, open_database
from app.models.tables import Job
from tests.engine_helpers import until


async def test_reads_cancelled_at_any_point_give_every_connection_back(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'labbatch.db'}")
    engine = db.engine
    assert isinstance(engine, ThreadEngine)

    async def read() -> None:
        async with db.connect() as conn:
            await conn.execute(select(Job.name).limit(1))
            await conn.execute(select(Job.name).limit(1))

    try:
        rng = random.Random(7)
        for _ in range(10):
            tasks = [asyncio.ensure_future(read()) for _ in range(40)]
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)  # each task gets a little further: open, first query …
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        pool = engine.sync_engine.pool

        async def all_back() -> bool:  # threads may still be finishing a cancelled open or read
            return pool.checkedout() == 0  # type: ignore[attr-defined, no-any-return]

        await until(all_back, timeout_s=10, what="every connection back in the pool")
        # and the engine still answers more reads at once than it has threads or pooled
        # connections (a pool that made a thread wait for a connection locked up here)
        async with asyncio.timeout(20):
            await asyncio.gather(*(read() for _ in range(100)))
    finally:
        await db.close()
