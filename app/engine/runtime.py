"""The driver wired to the local cloud: what `labbatch run`, `serve` and the desktop use."""

from __future__ import annotations

from app.clouds.local import LocalCloud
from app.engine import lease
from app.engine.driver import Driver, PoolSize
from app.engine.events import EventBus
from app.models.db import Database, data_dir


class LocalRuntime:
    """A driver whose pool is local worker processes under the user data dir."""

    def __init__(
        self,
        db: Database,
        *,
        bus: EventBus,
        n_workers: int,
        worker_cores_mcpu: int,
        start_delay_s: float = 0.0,
        orphan_timeout_s: float = 60.0,
    ) -> None:
        root = data_dir()
        self.db = db
        self.cloud = LocalCloud(
            root / "workers", start_delay_s=start_delay_s, orphan_timeout_s=orphan_timeout_s
        )
        batches = root / "batches"
        self.driver = Driver(
            db,
            self.cloud,
            size=PoolSize(n_workers=n_workers, worker_cores_mcpu=worker_cores_mcpu),
            bus=bus,
            batch_dir=lambda batch_id: str(batches / str(batch_id)),
        )

    async def start(self, *, wait_for_lease: bool = False) -> bool:
        """Start the driver if this process can take the lease."""
        return await self.driver.start(wait_for_lease=wait_for_lease)

    async def stop(self) -> None:
        await self.driver.stop()

    def notify_changed(self) -> None:
        self.driver.notify_changed()

    async def lease_holder(self) -> str | None:
        return await lease.current_holder(self.db)
