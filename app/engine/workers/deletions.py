"""Deleting retired workers' VMs until the cloud confirms each is gone.

A delete that fails (a 503, a timed-out operation) must not leave a VM billing for the
driver's lifetime: its instance row stays *deleting*, with the error for `pool show`, and the
delete is tried again with backoff, by this driver or, after a restart, by the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from app.clouds.base import CloudDriver
from app.engine.workers.instances import set_delete_error, set_instance_state
from app.errors import LabBatchError
from app.models.db import Database
from app.models.tables import InstanceState

log = logging.getLogger("labbatch.fleet")

RETRY_MAX_S = 60.0
STOP_DELETES_TIMEOUT_S = 120.0  # how long a stopping driver waits for its VMs' deletes


@dataclass(slots=True)
class Deletion:
    """One VM to delete: where the cloud finds it, and how often deleting it failed."""

    name: str
    pool: str
    handle: dict[str, Any] = field(default_factory=dict)
    failures: int = 0
    next_try: float = 0.0  # monotonic
    busy: bool = False


def retry_delay_s(failures: int) -> float:
    """Seconds before trying a failed delete again: 1, 2, 4 … 60."""
    return min(RETRY_MAX_S, 2.0 ** max(0, failures - 1))


class Deleter:
    """Deletes VMs and keeps trying the ones the cloud has not confirmed gone."""

    def __init__(
        self,
        db: Database,
        cloud_of: Callable[[str], CloudDriver | None],
        *,
        on_deleted: Callable[[str, str], None],
    ) -> None:
        self._db = db
        self._cloud_of = cloud_of  # pool -> its cloud driver (None: the pool is gone)
        self._on_deleted = on_deleted
        self.pending: dict[str, Deletion] = {}

    async def delete(self, name: str, pool: str, handle: dict[str, Any] | None = None) -> bool:
        """Delete a VM now; if that fails, keep it to try again. True once it is gone."""
        deletion = self.pending.setdefault(name, Deletion(name, pool, dict(handle or {})))
        return await self._try(deletion)

    async def delete_all(
        self,
        vms: list[tuple[str, str, dict[str, Any]]],
        *,
        reason: str,
        timeout_s: float = STOP_DELETES_TIMEOUT_S,
    ) -> None:
        """Mark these (name, pool, handle) VMs deleting and delete them, waiting at most
        ``timeout_s``: a stopping driver's last deletes. One not confirmed stays *deleting*."""
        if not vms:
            return
        now = time.time()

        def deleting(conn: Connection) -> None:
            for name, _pool, _handle in vms:
                set_instance_state(conn, name, InstanceState.DELETING, reason=reason, now=now)

        await self._db.run(deleting)
        deletes = (self.delete(name, pool, handle) for name, pool, handle in vms)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*deletes)

    def keep(self, name: str, pool: str, handle: dict[str, Any] | None = None) -> None:
        """Take over a delete an earlier driver did not finish; tried at the next retry."""
        self.pending.setdefault(name, Deletion(name, pool, dict(handle or {})))

    async def retry_due(self) -> None:
        """Try again every delete whose backoff has passed."""
        now = time.monotonic()
        due = [d for d in self.pending.values() if not d.busy and d.next_try <= now]
        if due:
            await asyncio.gather(*(self._try(d) for d in due))

    async def _try(self, deletion: Deletion) -> bool:
        if deletion.busy:
            return False
        cloud = self._cloud_of(deletion.pool)
        if cloud is None:
            return False  # the pool's cloud is not configured here; kept for a driver that is
        deletion.busy = True
        try:
            handle = {"pool": deletion.pool, **deletion.handle}
            await cloud.delete_instance(deletion.name, handle=handle)
        except Exception as exc:
            await self._failed(deletion, exc)
            return False
        finally:
            deletion.busy = False
        if deletion.failures:
            log.info("deleted VM %s after %d failed tries", deletion.name, deletion.failures)
        await self.mark_deleted(deletion.name, deletion.pool)
        return True

    async def mark_deleted(self, name: str, pool: str) -> None:
        """Record that the instance's VM is gone (or never existed)."""
        self.pending.pop(name, None)
        now = time.time()
        await self._db.run(
            lambda conn: set_instance_state(conn, name, InstanceState.DELETED, reason=None, now=now)
        )
        self._on_deleted(name, pool)

    async def _failed(self, deletion: Deletion, exc: Exception) -> None:
        deletion.failures += 1
        delay_s = retry_delay_s(deletion.failures)
        deletion.next_try = time.monotonic() + delay_s
        cause = (str(exc).splitlines() or [type(exc).__name__])[0]
        log.warning(
            "could not delete VM %s of pool %s (try %d): %s; trying again in %.0f s",
            deletion.name,
            deletion.pool,
            deletion.failures,
            cause,
            delay_s,
            exc_info=not isinstance(exc, LabBatchError),  # ours: a bug, with its traceback
        )
        error = f"{cause} (tried {deletion.failures} time(s); trying again)"
        await self._db.run(lambda conn: set_delete_error(conn, deletion.name, error))
