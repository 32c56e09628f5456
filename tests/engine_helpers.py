"""A real engine for tests: database, driver and local worker processes."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from app.engine.batches import frontend
from app.engine.events import EventBus
from app.engine.records import BatchInfo, JobInfo
from app.engine.runtime import LocalRuntime
from app.models.db import Database, open_database
from app.models.spec import parse_dag_text

USER = "tester"


def dag(text: str) -> object:
    """A BatchSpec from inline YAML."""
    return parse_dag_text(textwrap.dedent(text), source="<test>")


async def until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it is true, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Engine:
    db: Database
    runtime: LocalRuntime
    bus: EventBus

    async def submit(self, text: str) -> int:
        batch_id = await frontend.submit_batch(self.db, dag(text), user=USER)
        self.runtime.notify_changed()
        return batch_id

    async def wait(self, batch_id: int, timeout_s: float = 30.0) -> BatchInfo:
        async def done() -> bool:
            return (await frontend.get_batch(self.db, batch_id)).complete

        await until(done, timeout_s=timeout_s, what=f"batch {batch_id} to complete")
        return await frontend.get_batch(self.db, batch_id)

    async def jobs(self, batch_id: int) -> dict[str, JobInfo]:
        return {j.name: j for j in await frontend.list_jobs(self.db, batch_id)}

    async def job_state(self, batch_id: int, name: str) -> str:
        return (await frontend.find_job(self.db, batch_id, name)).state


@asynccontextmanager
async def engine(
    url: str, *, n_workers: int = 1, cores: float = 2.0, start: bool = True
) -> AsyncIterator[Engine]:
    db = await open_database(url)
    bus = EventBus()
    runtime = LocalRuntime(db, bus=bus, n_workers=n_workers, worker_cores_mcpu=int(cores * 1000))
    try:
        if start:
            assert await runtime.start()
        yield Engine(db, runtime, bus)
    finally:
        await runtime.stop()
        await db.close()


async def kill_worker_running(eng: Engine, batch_id: int, job: str) -> str:
    """SIGKILL the worker process that runs a job; returns the worker's name."""
    import os
    import signal

    from sqlalchemy import select

    from app.models.tables import Instance

    name = (await frontend.find_job(eng.db, batch_id, job)).instance_name
    async with eng.db.connect() as conn:
        handle = (
            await conn.execute(select(Instance.handle).where(Instance.name == name))
        ).scalar_one()
    os.kill(handle["pid"], signal.SIGKILL)
    assert name is not None
    return name
