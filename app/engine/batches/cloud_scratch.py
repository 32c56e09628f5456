"""Remove a batch's files from the cloud pools' scratch locations (the batch was deleted).

Local scratch directories are file_store's; here each cloud pool's storage deletes the objects
under ``<scratch>/<batch id>/`` with the user's credentials (a VM never lists or deletes).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.clouds.storage import STORAGE_OF_CLOUD, make_storage
from app.errors import LabBatchError
from app.models.db import Database
from app.models.locations import LocationError, parse_cloud
from app.models.tables import Pool

log = logging.getLogger("labbatch.files")


def _cloud_scratch(conn: Connection) -> list[Any]:
    query = select(Pool.name, Pool.cloud, Pool.scratch, Pool.config).where(
        Pool.cloud.in_(list(STORAGE_OF_CLOUD)), Pool.scratch.is_not(None)
    )
    return list(conn.execute(query))


async def remove_cloud_batch_files(db: Database, batch_id: int) -> int:
    """Delete the batch's objects in every cloud pool's scratch; returns how many."""
    done: set[str] = set()
    removed = 0
    for pool in await db.read(_cloud_scratch):
        try:
            root = parse_cloud(pool.scratch)
        except LocationError:
            continue
        if root is None:
            continue
        prefix = str(root.join(str(batch_id)))
        if prefix in done:
            continue
        done.add(prefix)
        try:
            storage = make_storage(pool.cloud, pool.config or {})
            removed += await storage.delete_prefix(prefix)
        except LabBatchError as exc:
            log.warning(
                "pool %s: could not remove the files of batch %s: %s", pool.name, batch_id, exc
            )
    return removed
