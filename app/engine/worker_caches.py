"""What each live worker's input cache holds and what it saved: the dashboard's figures.

What a cache holds is known only to the driver (workers report it with their heartbeats), so
it is given here by the caller, or not known (another process drives). Hits and bytes saved
are summed from the transfer figures of the attempts that ran on each worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.models.db import Database
from app.models.tables import Attempt, Instance, InstanceState


@dataclass(frozen=True, slots=True)
class WorkerCache:
    """One live worker's input cache."""

    pool: str
    worker: str
    cached_bytes: int | None  # None: not known in this process (another one drives)
    entries: int | None
    hits: int  # inputs linked from the cache instead of downloaded, over its attempts
    bytes_saved: int


def worker_caches(
    workers: Iterable[tuple[str, str]],
    held: Mapping[str, Mapping[str, int]] | None,
    staging: Iterable[tuple[str, Mapping[str, Any]]],
) -> list[WorkerCache]:
    """Rows by pool and worker from (pool, worker) pairs, what each cache holds (location ->
    bytes; None: unknown) and (worker, transfer figures) of attempts."""
    hits: dict[str, int] = {}
    saved: dict[str, int] = {}
    for worker, figures in staging:
        hits[worker] = hits.get(worker, 0) + int(figures.get("cache_hits") or 0)
        saved[worker] = saved.get(worker, 0) + int(figures.get("cache_bytes_saved") or 0)
    rows = []
    for pool, worker in sorted(workers):
        holds = None if held is None else held.get(worker, {})
        rows.append(
            WorkerCache(
                pool=pool,
                worker=worker,
                cached_bytes=None if holds is None else sum(holds.values()),
                entries=None if holds is None else len(holds),
                hits=hits.get(worker, 0),
                bytes_saved=saved.get(worker, 0),
            )
        )
    return rows


def _read(conn: Connection) -> tuple[list[tuple[str, str]], list[tuple[str, Any]]]:
    workers = [
        (row.pool, row.name)
        for row in conn.execute(
            select(Instance.pool, Instance.name).where(Instance.state != InstanceState.DELETED)
        )
    ]
    names = [name for _, name in workers]
    if not names:
        return [], []
    query = select(Attempt.instance_name, Attempt.staging).where(
        Attempt.instance_name.in_(names), Attempt.staging.is_not(None)
    )
    return workers, [(row.instance_name, row.staging) for row in conn.execute(query)]


async def read_worker_caches(
    db: Database, held: Mapping[str, Mapping[str, int]] | None
) -> list[WorkerCache]:
    """Each live worker's cache figures; ``held`` is what the driver knows the caches hold."""
    workers, staging = await db.read(_read)
    return worker_caches(workers, held, staging)
