"""The driver wired to its clouds: what `labbatch run`, `serve` and the desktop use."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from app.clouds import registry
from app.clouds.base import CloudDriver
from app.clouds.local import LocalCloud, SpareWorker
from app.engine import lease
from app.engine.driver import Driver
from app.engine.events import EventBus
from app.engine.workers.pools import DEFAULT_POOL, cloud_config
from app.models.db import Database
from app.models.paths import data_dir, work_dir


class LocalRuntime:
    """A driver with the local cloud (pools of worker processes in the work dir, beside the
    data dir) and the GCE and Azure clouds, which load their SDK only when a pool needs it.

    ``n_workers`` / ``worker_cores_mcpu`` size the default pool for this process only (what
    `labbatch run --workers N --cores C` asks for); without them the stored settings apply.
    A ``spare`` worker process (app.clouds.local.start_spare) becomes the first local worker.
    """

    def __init__(
        self,
        db: Database,
        *,
        bus: EventBus,
        n_workers: int | None = None,
        worker_cores_mcpu: int | None = None,
        orphan_timeout_s: float = 60.0,
        user: str | None = None,
        spare: SpareWorker | None = None,
    ) -> None:
        root = work_dir()  # jobs learn paths in here: not the data dir, which holds the key
        self.db = db
        self.cloud = LocalCloud(root / "workers", orphan_timeout_s=orphan_timeout_s, spare=spare)
        batches = root / "batches"
        override: dict[str, Any] = {}
        if n_workers is not None:
            override.update(
                min_instances=n_workers, max_instances=n_workers, max_live_instances=n_workers
            )
        if worker_cores_mcpu is not None:
            override.update(worker_cores_mcpu=worker_cores_mcpu, standing_worker_cores_mcpu=0)
        clouds: dict[str, CloudDriver] = {"local": self.cloud}
        for kind in registry.CLOUD_KINDS:
            clouds[kind] = registry.LazyCloud(kind, self._cloud_settings)
        self.driver = Driver(
            db,
            clouds,
            bus=bus,
            batch_dir=lambda batch_id: f"{batches}/{batch_id}",  # per job: no pathlib
            pool_overrides={DEFAULT_POOL: override} if override else None,
            owner=user,
            data_dir=data_dir(),
        )

    def _cloud_settings(self, pool: str) -> dict[str, Any]:
        """A cloud pool's settings as the driver last loaded them (KeyError: no such pool)."""
        return cloud_config(self.driver.fleet.pools[pool])

    async def start(self, *, wait_for_lease: bool = False) -> bool:
        """Start the driver if this process can take the lease."""
        return await self.driver.start(wait_for_lease=wait_for_lease)

    async def first_sizing(self, *, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until the started driver has sized its pools once, so
        that the workers they need are being created."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self.driver.fleet.sized.wait()

    async def stop(self) -> None:
        await self.driver.stop()

    def notify_changed(self) -> None:
        self.driver.notify_changed()

    async def lease_holder(self) -> str | None:
        return await lease.current_holder(self.db)
