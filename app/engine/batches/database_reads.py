"""The read-only commands' reads through SQLAlchemy: PostgreSQL, or a SQLite file to migrate."""

from __future__ import annotations

from app.engine.batches import file_store, frontend
from app.engine.records import BatchInfo, JobInfo
from app.models.db import Database


class DatabaseReads:
    """reads.BatchReads over an open Database (the frontend's own queries)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_batch(self, batch_id: int) -> BatchInfo:
        return await frontend.get_batch(self.db, batch_id)

    async def list_batches(self, *, user: str | None, limit: int) -> list[BatchInfo]:
        return await frontend.list_batches(self.db, user=user, limit=limit)

    async def list_jobs(self, batch_id: int, *, state: str | None = None) -> list[JobInfo]:
        return await frontend.list_jobs(self.db, batch_id, state=state)

    async def find_job(self, batch_id: int, ref: str | int) -> JobInfo:
        return await frontend.find_job(self.db, batch_id, ref)

    async def job_log(self, batch_id: int, job_id: int, *, attempt: int | None) -> str:
        return await frontend.job_log(self.db, batch_id, job_id, attempt=attempt)

    async def attempt_staging(self, batch_id: int) -> dict[int, dict[str, float]]:
        return await file_store.attempt_staging(self.db, batch_id)
