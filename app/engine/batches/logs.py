"""A job's log while it runs (read from its worker) and after it ends (from the database)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.engine.batches.frontend import find_job, job_log
from app.engine.secrets import worker_token
from app.engine.workers.connection import pinned, worker_url
from app.engine.workers.instances import tls_pin
from app.models.db import Database
from app.models.tables import Instance, Job, JobState
from app.protocol import LOG_PATH, bearer

log = logging.getLogger("labbatch.logs")
FETCH_TIMEOUT_S = 3.0
_LIVE = (JobState.CREATING, JobState.RUNNING)


@dataclass(frozen=True, slots=True)
class LogChunk:
    """Log text to show; ``offset`` is where the next read of a live log starts.

    ``whole`` means the text replaces what was shown (the stored log of a finished attempt);
    otherwise it continues it. ``live`` is true while the job runs, so the reader asks again.
    """

    text: str
    offset: int
    whole: bool
    live: bool
    note: str = ""


async def read_log(db: Database, batch_id: int, job_ref: str | int, *, offset: int = 0) -> LogChunk:
    """The part of a job's log from ``offset`` on while it runs, or its stored log once it ended."""
    job = await find_job(db, batch_id, job_ref)
    place = await db.read(lambda conn: _where_running(conn, batch_id, job.job_id))
    if place is None:
        text = await job_log(db, batch_id, job.job_id)
        note = "" if text or job.state not in _WAITING else f"job {job.name} is {job.state}"
        return LogChunk(text=text, offset=len(text.encode()), whole=True, live=False, note=note)
    instance, address, attempt, tls_sha256 = place
    if address is None:
        return LogChunk("", offset, whole=False, live=True, note=f"waiting for {instance}")
    try:
        data = await _fetch(instance, address, tls_sha256, batch_id, job.job_id, attempt, offset)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.info("cannot read the live log from %s: %s", instance, exc)
        return LogChunk("", offset, whole=False, live=True, note=f"{instance} does not answer")
    # stop at the last full line so that a character split across reads stays whole
    cut = data.rfind(b"\n") + 1 if len(data) < 1 << 20 else len(data)
    text = data[:cut].decode("utf-8", errors="replace")
    return LogChunk(text=text, offset=offset + cut, whole=False, live=True)


_WAITING = (JobState.PENDING, JobState.READY, JobState.CREATING, JobState.RUNNING)


def _where_running(
    conn: Connection, batch_id: int, job_id: int
) -> tuple[str, str | None, int, str | None] | None:
    row = conn.execute(
        select(Job.state, Job.instance_name, Job.last_attempt, Instance.address, Instance.handle)
        .select_from(Job)
        .outerjoin(Instance, Instance.name == Job.instance_name)
        .where(Job.batch_id == batch_id, Job.job_id == job_id)
    ).first()
    if row is None or row.state not in _LIVE or row.instance_name is None:
        return None
    return row.instance_name, row.address, row.last_attempt, tls_pin(row.handle)


async def _fetch(
    instance: str,
    address: str,
    tls_sha256: str | None,
    batch_id: int,
    job_id: int,
    attempt: int,
    offset: int,
) -> bytes:
    path = LOG_PATH.format(batch_id=batch_id, job_id=job_id, attempt=attempt)
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(
            worker_url(address, path, tls_sha256),
            ssl=pinned(tls_sha256),
            params={"offset": str(offset)},
            headers={"Authorization": bearer(worker_token(instance))},
        ) as response,
    ):
        if response.status == 404:  # the job has not written anything yet
            return b""
        response.raise_for_status()
        return await response.read()
