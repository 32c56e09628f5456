"""Remove batches' files from the cloud pools' scratch locations.

Local scratch directories are file_store's; here each cloud pool's storage lists and deletes the
objects under ``<scratch>/<batch id>/`` with the user's credentials (a VM never lists or
deletes): at once when a batch is deleted, and in the driver's periodic sweep once a batch is
deleted or its pool's retention has passed since it ended (never while it can run again, and
never a batch this database does not know). A sweep deletes a bounded number of objects; what
is left goes in the next pass. Cloud errors are logged, never raised: the sweep runs again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.clouds.base import StorageSigner
from app.clouds.storage import STORAGE_OF_CLOUD, make_storage
from app.engine.batches.file_store import batch_expired
from app.errors import LabBatchError
from app.models.db import Database
from app.models.locations import LocationError, parse_cloud
from app.models.tables import Batch, Pool

log = logging.getLogger("labbatch.files")
SWEEP_MAX_OBJECTS = 1000  # objects deleted per sweep, over every scratch location


def _cloud_scratch(conn: Connection) -> list[Any]:
    query = select(Pool.name, Pool.cloud, Pool.scratch, Pool.config, Pool.retention_s).where(
        Pool.cloud.in_(list(STORAGE_OF_CLOUD)), Pool.scratch.is_not(None)
    )
    return list(conn.execute(query.order_by(Pool.name)))


@dataclass(slots=True)
class _Root:
    """One cloud scratch location and what the sweep needs to clean it."""

    location: str  # canonical, no trailing slash
    pool: str  # the first pool using it (named in the log)
    storage: StorageSigner
    retention_s: float  # the longest retention of the pools sharing it


def _roots(pools: Iterable[Any]) -> list[_Root]:
    roots: dict[str, _Root] = {}
    for pool in pools:
        try:
            where = parse_cloud(pool.scratch)
        except LocationError:
            continue
        if where is None:
            continue
        location = str(where).rstrip("/")
        if location in roots:
            roots[location].retention_s = max(roots[location].retention_s, pool.retention_s)
            continue
        try:
            storage = make_storage(pool.cloud, pool.config or {})
        except (LabBatchError, ValueError) as exc:
            log.warning("pool %s: cannot reach its scratch %s: %s", pool.name, location, exc)
            continue
        roots[location] = _Root(location, pool.name, storage, pool.retention_s)
    return list(roots.values())


async def remove_cloud_batch_files(db: Database, batch_id: int) -> int:
    """Delete the batch's objects in every cloud pool's scratch; returns how many."""
    removed = 0
    for root in _roots(await db.read(_cloud_scratch)):
        try:
            removed += await root.storage.delete_prefix(f"{root.location}/{batch_id}")
        except LabBatchError as exc:
            log.warning(
                "pool %s: could not remove the files of batch %s: %s", root.pool, batch_id, exc
            )
    return removed


def _batches(ids: list[int]) -> Any:
    def read(conn: Connection) -> dict[int, Any]:
        query = select(Batch.id, Batch.deleted, Batch.complete, Batch.time_completed)
        return {row.id: row for row in conn.execute(query.where(Batch.id.in_(ids)))}

    return read


def _may_go(batch: Any, retention_s: float, now: float) -> bool:
    # Unlike a local directory, a bucket may be shared by several LabBatch databases: the
    # folder of a batch this database does not know is another one's, and stays.
    return batch is not None and batch_expired(batch, retention_s, now)


async def remove_expired_cloud_files(
    db: Database, *, now: float | None = None, max_objects: int = SWEEP_MAX_OBJECTS
) -> int:
    """Delete the cloud scratch objects of deleted batches and of batches whose retention
    passed, at most ``max_objects`` of them; returns how many were deleted."""
    now = time.time() if now is None else now
    budget = max_objects
    for root in _roots(await db.read(_cloud_scratch)):
        if budget <= 0:
            break
        try:
            children = await root.storage.list_children(root.location)
        except LabBatchError as exc:
            log.warning("pool %s: could not list its scratch %s: %s", root.pool, root.location, exc)
            continue
        ids = sorted(int(name) for name in children if name.isdigit())
        if not ids:
            continue
        batches = await db.read(_batches(ids))
        for batch_id in ids:
            if budget <= 0:
                break
            if not _may_go(batches.get(batch_id), root.retention_s, now):
                continue
            # read again just before deleting: a retry since the listing makes it runnable
            again = (await db.read(_batches([batch_id]))).get(batch_id)
            if not _may_go(again, root.retention_s, now):
                continue
            prefix = f"{root.location}/{batch_id}"
            try:
                n_deleted = await root.storage.delete_prefix(prefix, max_objects=budget)
            except LabBatchError as exc:  # the cloud likely refuses the rest too: next pass
                log.warning("pool %s: could not remove %s: %s", root.pool, prefix, exc)
                break
            budget -= n_deleted
            log.info("removed %d object(s) of batch %s in %s", n_deleted, batch_id, root.location)
    return max_objects - budget
