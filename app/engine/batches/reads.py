"""What the read-only commands read (`labbatch status`, `jobs`, `log`, `list`), started fast.

SQLAlchemy alone takes longer to import than `labbatch status` may take in all. So on a
SQLite file already at the newest schema revision these reads go through the standard
library's sqlite3 driver, with no SQLAlchemy, engine or billing code loaded. Anything else (a
PostgreSQL URL, a file that is not there yet, an older schema that needs migrating) opens the
database as every other command does and asks the frontend, which the SQLite reads must agree
with (tests/test_reads.py compares the two on one database).

The statements below are the frontend's queries written out for SQLite (STYLE rule 4 keeps
SQL strings out of logic; this module is the one exception, for start-up time, and holds only
SELECTs). The column lists mirror frontend.BATCH_COLUMNS and JOB_INFO_COLUMNS (tested).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from app.engine.records import BatchInfo, JobInfo
from app.errors import NotFoundError, UserError
from app.models.revisions import head_revision

DB_ENV = "LABBATCH_DB"  # as app.models.db reads it
JOB_NAME_PREFIX = "name:"  # as frontend.find_job reads it
JOB_STATES = ("Pending", "Ready", "Creating", "Running", "Success", "Failed", "Error", "Cancelled")

BATCH_FIELDS = (
    "id",
    "name",
    "user",
    "billing_project",
    "state",
    "complete",
    "cancelled",
    "n_jobs",
    "n_completed",
    "n_succeeded",
    "n_failed",
    "n_cancelled",
    "time_created",
    "time_completed",
    "attributes",
)
JOB_FIELDS = (
    "batch_id",
    "job_id",
    "name",
    "state",
    "exit_code",
    "error",
    "last_attempt",
    "instance_name",
    "cores_mcpu",
    "always_run",
    "time_started",
    "time_ended",
)
_BATCH_SELECT = "SELECT {} FROM batches".format(", ".join(f'"{f}"' for f in BATCH_FIELDS))
_JOB_SELECT = "SELECT {} FROM jobs".format(", ".join(f'"{f}"' for f in JOB_FIELDS))


class BatchReads(Protocol):
    """The reads the read-only commands make; each raises NotFoundError for a missing batch."""

    async def get_batch(self, batch_id: int) -> BatchInfo: ...

    async def list_batches(self, *, user: str | None, limit: int) -> list[BatchInfo]: ...

    async def list_jobs(self, batch_id: int, *, state: str | None = None) -> list[JobInfo]: ...

    async def find_job(self, batch_id: int, ref: str | int) -> JobInfo: ...

    async def job_log(self, batch_id: int, job_id: int, *, attempt: int | None) -> str: ...

    async def attempt_staging(self, batch_id: int) -> dict[int, dict[str, float]]: ...


@asynccontextmanager
async def open_reads(url: str | None) -> AsyncIterator[BatchReads]:
    """Reads of the database ``url`` (or LABBATCH_DB, or the default) names."""
    conn = _direct_connection(url)
    if conn is not None:
        try:
            yield SqliteReads(conn)
        finally:
            conn.close()
        return
    from app.engine.batches.database_reads import DatabaseReads
    from app.models.db import open_database

    db = await open_database(url)
    try:
        yield DatabaseReads(db)
    finally:
        await db.close()


def sqlite_file(url: str | None) -> Path | None:
    """The SQLite file a URL names, if it is a plain one this module may read directly."""
    raw = url or os.environ.get(DB_ENV)
    if not raw:
        from app.models.paths import data_dir

        return data_dir() / "labbatch.db"
    if "://" not in raw:
        return Path(raw).expanduser().resolve()
    prefix = "sqlite:///"
    if not raw.startswith(prefix) or "?" in raw or len(raw) == len(prefix):
        return None  # PostgreSQL, a driver name, options: the full path handles it
    return Path(raw[len(prefix) :]).expanduser()


def _direct_connection(url: str | None) -> sqlite3.Connection | None:
    """A sqlite3 connection if the file is there and at the newest revision, else None."""
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return None
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        found = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
        if found == [head_revision()]:
            return conn
    except sqlite3.Error:
        pass  # no tables yet, or not a database: open_database says what is wrong
    conn.close()
    return None


def parse_job_state(text: str) -> str:
    """A job state as stored, from any spelling of its name (as frontend.parse_job_state)."""
    for state in JOB_STATES:
        if state.lower() == text.lower():
            return state
    raise UserError(
        f"unknown job state {text!r}: use one of {', '.join(s.lower() for s in JOB_STATES)}"
    )


def _batch(row: tuple[Any, ...]) -> BatchInfo:
    values = dict(zip(BATCH_FIELDS, row, strict=True))
    values["complete"] = bool(values["complete"])
    values["cancelled"] = bool(values["cancelled"])
    values["attributes"] = dict(json.loads(values["attributes"] or "null") or {})
    return BatchInfo(**values)


def _job(row: tuple[Any, ...]) -> JobInfo:
    values = dict(zip(JOB_FIELDS, row, strict=True))
    values["n_attempts"] = values.pop("last_attempt")
    values["always_run"] = bool(values["always_run"])
    return JobInfo(**values)


class SqliteReads:
    """The reads over one sqlite3 connection (SELECTs only)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def get_batch(self, batch_id: int) -> BatchInfo:
        row = self.conn.execute(f"{_BATCH_SELECT} WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"there is no batch {batch_id}")
        return _batch(row)

    async def list_batches(self, *, user: str | None, limit: int) -> list[BatchInfo]:
        where = "deleted = 0" if user is None else 'deleted = 0 AND "user" = ?'
        params: tuple[object, ...] = (limit,) if user is None else (user, limit)
        query = f"{_BATCH_SELECT} WHERE {where} ORDER BY id DESC LIMIT ?"
        return [_batch(row) for row in self.conn.execute(query, params)]

    async def list_jobs(self, batch_id: int, *, state: str | None = None) -> list[JobInfo]:
        await self.get_batch(batch_id)
        where = "batch_id = ?" if state is None else "batch_id = ? AND state = ?"
        params = (batch_id,) if state is None else (batch_id, parse_job_state(state))
        query = f"{_JOB_SELECT} WHERE {where} ORDER BY job_id"
        return [_job(row) for row in self.conn.execute(query, params)]

    async def find_job(self, batch_id: int, ref: str | int) -> JobInfo:
        await self.get_batch(batch_id)
        row = None
        if isinstance(ref, int) or ref.isdigit():
            query = f"{_JOB_SELECT} WHERE batch_id = ? AND job_id = ?"
            row = self.conn.execute(query, (batch_id, int(ref))).fetchone()
        if row is None and not isinstance(ref, int):
            query = f"{_JOB_SELECT} WHERE batch_id = ? AND name = ? LIMIT 1"
            name = ref.removeprefix(JOB_NAME_PREFIX)
            row = self.conn.execute(query, (batch_id, name)).fetchone()
        if row is None:
            raise NotFoundError(f"batch {batch_id} has no job {ref!r}")
        return _job(row)

    async def job_log(self, batch_id: int, job_id: int, *, attempt: int | None) -> str:
        query = "SELECT text FROM job_logs WHERE batch_id = ? AND job_id = ?"
        params: list[int] = [batch_id, job_id]
        if attempt:
            query, params = f"{query} AND attempt = ?", [*params, attempt]
        else:
            query = f"{query} ORDER BY attempt DESC"
        row = self.conn.execute(f"{query} LIMIT 1", params).fetchone()
        return (row[0] if row else None) or ""

    async def attempt_staging(self, batch_id: int) -> dict[int, dict[str, float]]:
        query = (
            "SELECT job_id, staging FROM attempts WHERE batch_id = ? AND staging IS NOT NULL "
            "ORDER BY job_id, attempt"
        )
        found = {}
        for job_id, text in self.conn.execute(query, (batch_id,)):
            staging = json.loads(text)
            if staging is not None:
                found[job_id] = dict(staging)
        return found
