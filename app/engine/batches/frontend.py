"""The front end: store batches and updates, cancel them, and read them back.

Any process may call these (a desktop, the CLI, a front end without the driver lease); the
driver notices new work through the change marker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from app.engine.batches.completion import Changes, cancel_batch_jobs, chunks, settle_batch
from app.engine.batches.dag import InitialState, initial_states
from app.engine.batches.files import copy_batch_inputs, files_by_job, staging_text
from app.engine.billing.projects import check_submit
from app.engine.marker import bump_marker
from app.engine.records import AttemptInfo, BatchInfo, JobDetail, JobInfo
from app.errors import NotFoundError, UserError
from app.models.bulk import bulk_insert, json_text
from app.models.db import DEFAULT_POOL_NAME, JOB_PRIVATE_POOL, Database
from app.models.spec import BatchSpec, JobSpec
from app.models.tables import (
    Attempt,
    Batch,
    Job,
    JobLog,
    JobParent,
    JobState,
    Pool,
    Update,
    job_parents_table,
    jobs_table,
)


async def submit_batch(db: Database, spec: BatchSpec, *, user: str) -> int:
    """Store a validated batch and its jobs in one transaction; returns the batch id."""
    now = time.time()
    if spec.outputs:  # batch outputs that copy a batch input need no job
        await asyncio.to_thread(copy_batch_inputs, spec.inputs, spec.outputs)

    def store(conn: Connection) -> int:
        check_submit(conn, spec.billing_project, user)
        _check_pools(conn, spec.jobs)
        batch_id = (
            conn.execute(
                insert(Batch)
                .values(
                    user=user,
                    billing_project=spec.billing_project,
                    name=spec.name,
                    attributes=dict(spec.attributes),
                    source=spec.source,
                    cancel_after_n_failures=spec.cancel_after_n_failures,
                    time_created=now,
                    complete=not spec.jobs,
                    state="success" if not spec.jobs else "running",
                    time_completed=now if not spec.jobs else None,
                )
                .returning(Batch.id)
            )
        ).scalar_one()
        _insert_update(
            conn, batch_id, spec.jobs, user=user, now=now, start_job_id=1, old={}, batch=spec
        )
        bump_marker(conn)
        return batch_id

    return await db.run(store)


async def append_update(db: Database, batch_id: int, spec: BatchSpec, *, user: str) -> int:
    """Add jobs to an existing batch (they may depend on its jobs); returns the update id."""
    now = time.time()

    def store(conn: Connection) -> int:
        batch = locked_batch(conn, batch_id)
        if batch.user != user:
            raise UserError(f"batch {batch_id} belongs to {batch.user}, not {user}")
        if batch.cancelled:
            raise UserError(f"batch {batch_id} was cancelled; updates to it are refused")
        _check_pools(conn, spec.jobs)
        wanted = sorted({p for job in spec.jobs for p in job.depends_on})
        old: dict[str, tuple[int, str]] = {}
        for part in chunks(wanted):
            rows = conn.execute(
                select(Job.name, Job.job_id, Job.state).where(
                    Job.batch_id == batch_id, Job.name.in_(part)
                )
            )
            old.update({name: (job_id, state) for name, job_id, state in rows})
        update_id = _insert_update(
            conn,
            batch_id,
            spec.jobs,
            user=user,
            now=now,
            start_job_id=batch.n_jobs + 1,
            old=old,
            batch=spec,
        )
        settle_batch(conn, batch_id, now, Changes())
        bump_marker(conn)
        return update_id

    return await db.run(store)


async def existing_job_names(db: Database, batch_id: int) -> list[str]:
    async with db.connect() as conn:
        return list(
            (await conn.execute(select(Job.name).where(Job.batch_id == batch_id))).scalars()
        )


def _check_pools(conn: Connection, jobs: Sequence[JobSpec]) -> None:
    wanted = {job.pool for job in jobs if job.pool and not job.machine_type}
    if not wanted:
        return
    known = set(conn.execute(select(Pool.name)).scalars())
    missing = sorted(wanted - known)
    if missing:
        users = {m: next(j.name for j in jobs if j.pool == m) for m in missing}
        listed = ", ".join(f"{m!r} (job {users[m]!r})" for m in missing)
        raise UserError(
            f"unknown pool {listed}; pools: {', '.join(sorted(known))}; "
            "create one with `labbatch pool create`"
        )


def locked_batch(conn: Connection, batch_id: int) -> Any:
    query = select(Batch.user, Batch.cancelled, Batch.n_jobs, Batch.n_updates).where(
        Batch.id == batch_id
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (conn.execute(query)).first()
    if row is None:
        raise NotFoundError(f"there is no batch {batch_id}")
    return row


def _insert_update(
    conn: Connection,
    batch_id: int,
    jobs: Sequence[JobSpec],
    *,
    user: str,
    now: float,
    start_job_id: int,
    old: dict[str, tuple[int, str]],
    batch: BatchSpec | None = None,
) -> int:
    """Insert one committed update: its jobs and parents in bulk, counts on the batch."""
    n_updates = (conn.execute(select(Batch.n_updates).where(Batch.id == batch_id))).scalar_one()
    update_id = n_updates + 1
    ids = {job.name: start_job_id + i for i, job in enumerate(jobs)}
    ids.update({name: job_id for name, (job_id, _state) in old.items() if name not in ids})
    job_ids = [ids[job.name] for job in jobs]
    parent_ids = [[ids[p] for p in job.depends_on] for job in jobs]
    old_states = {job_id: state for job_id, state in old.values()}
    states = initial_states(job_ids, parent_ids, [j.always_run for j in jobs], old_states)
    files = files_by_job(batch, ids, _pool_of) if batch else {}
    conn.execute(
        insert(Update).values(
            batch_id=batch_id,
            update_id=update_id,
            start_job_id=start_job_id,
            n_jobs=len(jobs),
            committed=True,
            time_created=now,
            time_committed=now,
        )
    )
    if jobs:
        bulk_insert(
            conn,
            jobs_table,
            JOB_COLUMNS,
            [
                _job_row(batch_id, job_id, update_id, job, st, user, now, files.get(job.name))
                for job_id, job, st in zip(job_ids, jobs, states, strict=True)
            ],
        )
        edges = [
            (batch_id, job_id, parent)
            for job_id, parents in zip(job_ids, parent_ids, strict=True)
            for parent in parents
        ]
        bulk_insert(conn, job_parents_table, ("batch_id", "job_id", "parent_id"), edges)
    n_born_cancelled = sum(1 for st in states if st.state == JobState.CANCELLED)
    conn.execute(
        update(Batch)
        .where(Batch.id == batch_id)
        .values(
            n_jobs=Batch.n_jobs + len(jobs),
            n_updates=update_id,
            n_completed=Batch.n_completed + n_born_cancelled,
            n_cancelled=Batch.n_cancelled + n_born_cancelled,
        )
    )
    return update_id


# In the table's column order, every column given: bulk_insert then hands the rows over as
# they are, with no reordering pass per row.
JOB_COLUMNS = (
    "batch_id",
    "job_id",
    "update_id",
    "name",
    "user",
    "state",
    "n_pending_parents",
    "cancelled",
    "always_run",
    "n_max_attempts",
    "n_attempts",
    "last_attempt",
    "n_preemptions",
    "cores_mcpu",
    "memory_bytes",
    "storage_bytes",
    "pool",
    "preemptible",
    "regions",
    "machine_type",
    "spec",
    "time_ready",
    "time_ended",
)


def _job_row(
    batch_id: int,
    job_id: int,
    update_id: int,
    job: JobSpec,
    st: InitialState,
    user: str,
    now: float,
    files: dict[str, Any] | None = None,
) -> tuple[Any, ...]:
    """One jobs row, in JOB_COLUMNS order."""
    spec = {
        "command": job.command,
        "env": dict(job.env),
        "image": job.image,
        "timeout_s": job.timeout_s,
        "attributes": dict(job.attributes),
        "memory_class": job.memory_class,
        "expected_duration_s": job.expected_duration_s,
        "retry": None
        if job.retry is None
        else {
            "on": sorted(job.retry.on),
            "max": job.retry.max_retries,
            "memory_factor": job.retry.memory_factor,
            "fallback_after_preemptions": job.retry.fallback_after_preemptions,
        },
    }
    if files:
        spec["files"] = files
    return (
        batch_id,
        job_id,
        update_id,
        job.name,
        user,
        str(st.state),
        st.n_pending_parents,
        st.cancelled,
        job.always_run,
        job.n_max_attempts,
        0,  # n_attempts
        0,  # last_attempt
        0,  # n_preemptions
        job.cores_mcpu,
        job.memory_bytes,
        job.storage_bytes,
        _pool_of(job),
        job.preemptible,
        json_text(list(job.regions)) if job.regions else None,
        job.machine_type,
        json_text(spec),
        now if st.state == JobState.READY else None,
        now if st.state == JobState.CANCELLED else None,
    )


def _pool_of(job: JobSpec) -> str:
    return JOB_PRIVATE_POOL if job.machine_type else job.pool or DEFAULT_POOL_NAME


async def cancel_batch(db: Database, batch_id: int, *, user: str | None = None) -> BatchInfo:
    """Cancel a batch: Ready and Pending jobs end now; the driver kills Running ones."""
    now = time.time()

    def cancel(conn: Connection) -> None:
        batch = locked_batch(conn, batch_id)
        if user is not None and batch.user != user:
            raise UserError(f"batch {batch_id} belongs to {batch.user}; only they can cancel it")
        if not batch.cancelled:
            cancel_batch_jobs(conn, batch_id, now, Changes())
            bump_marker(conn)

    await db.run(cancel)
    return await get_batch(db, batch_id)


# ---------------------------------------------------------------------------------------------
# Reads


def batch_info(row: Any) -> BatchInfo:
    return BatchInfo(
        id=row.id,
        name=row.name,
        user=row.user,
        billing_project=row.billing_project,
        state=row.state,
        complete=row.complete,
        cancelled=row.cancelled,
        n_jobs=row.n_jobs,
        n_completed=row.n_completed,
        n_succeeded=row.n_succeeded,
        n_failed=row.n_failed,
        n_cancelled=row.n_cancelled,
        time_created=row.time_created,
        time_completed=row.time_completed,
        attributes=dict(row.attributes or {}),
    )


BATCH_COLUMNS = (
    Batch.id,
    Batch.name,
    Batch.user,
    Batch.billing_project,
    Batch.state,
    Batch.complete,
    Batch.cancelled,
    Batch.n_jobs,
    Batch.n_completed,
    Batch.n_succeeded,
    Batch.n_failed,
    Batch.n_cancelled,
    Batch.time_created,
    Batch.time_completed,
    Batch.attributes,
)


async def get_batch(db: Database, batch_id: int) -> BatchInfo:
    async with db.connect() as conn:
        row = (await conn.execute(select(*BATCH_COLUMNS).where(Batch.id == batch_id))).first()
    if row is None:
        raise NotFoundError(f"there is no batch {batch_id}")
    return batch_info(row)


async def list_batches(
    db: Database, *, user: str | None = None, limit: int = 100
) -> list[BatchInfo]:
    query = (
        select(*BATCH_COLUMNS)
        .where(Batch.deleted.is_(False))
        .order_by(Batch.id.desc())
        .limit(limit)
    )
    if user is not None:
        query = query.where(Batch.user == user)
    async with db.connect() as conn:
        return [batch_info(row) for row in await conn.execute(query)]


JOB_INFO_COLUMNS = (
    Job.batch_id,
    Job.job_id,
    Job.name,
    Job.state,
    Job.exit_code,
    Job.error,
    Job.last_attempt,
    Job.instance_name,
    Job.cores_mcpu,
    Job.always_run,
    Job.time_started,
    Job.time_ended,
)


def job_info(row: Any) -> JobInfo:
    return JobInfo(
        batch_id=row.batch_id,
        job_id=row.job_id,
        name=row.name,
        state=row.state,
        exit_code=row.exit_code,
        error=row.error,
        n_attempts=row.last_attempt,
        instance_name=row.instance_name,
        cores_mcpu=row.cores_mcpu,
        always_run=row.always_run,
        time_started=row.time_started,
        time_ended=row.time_ended,
    )


async def list_jobs(
    db: Database,
    batch_id: int,
    *,
    state: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[JobInfo]:
    """A batch's jobs in id order, optionally of one state, one page at a time."""
    await get_batch(db, batch_id)
    query = select(*JOB_INFO_COLUMNS).where(Job.batch_id == batch_id).order_by(Job.job_id)
    if state is not None:
        query = query.where(Job.state == parse_job_state(state))
    query = query.offset(offset).limit(limit)
    async with db.connect() as conn:
        return [job_info(row) for row in await conn.execute(query)]


def parse_job_state(text: str) -> str:
    for state in JobState:
        if state.value.lower() == text.lower():
            return state.value
    raise UserError(
        f"unknown job state {text!r}: use one of {', '.join(s.value.lower() for s in JobState)}"
    )


JOB_NAME_PREFIX = "name:"


async def find_job(db: Database, batch_id: int, ref: str | int) -> JobInfo:
    """A job by id or by name: digits are an id, else (no such id) a name; ``name:X`` is
    always the job named X (for a name made of digits that is also another job's id)."""
    await get_batch(db, batch_id)
    query = select(*JOB_INFO_COLUMNS).where(Job.batch_id == batch_id)
    by_name = query.where(Job.name == str(ref).removeprefix(JOB_NAME_PREFIX))
    async with db.connect() as conn:
        row = None
        if isinstance(ref, int) or ref.isdigit():
            row = (await conn.execute(query.where(Job.job_id == int(ref)))).first()
        if row is None and not isinstance(ref, int):
            row = (await conn.execute(by_name)).first()
    if row is None:
        raise NotFoundError(f"batch {batch_id} has no job {ref!r}")
    return job_info(row)


async def job_detail(db: Database, batch_id: int, ref: str | int) -> JobDetail:
    job = await find_job(db, batch_id, ref)
    async with db.connect() as conn:
        spec = (
            await conn.execute(
                select(Job.spec).where(Job.batch_id == batch_id, Job.job_id == job.job_id)
            )
        ).scalar_one()
        parents = list(
            (
                await conn.execute(
                    select(Job.name)
                    .join(
                        JobParent,
                        (JobParent.batch_id == Job.batch_id) & (JobParent.parent_id == Job.job_id),
                    )
                    .where(JobParent.batch_id == batch_id, JobParent.job_id == job.job_id)
                    .order_by(Job.job_id)
                )
            ).scalars()
        )
        attempts = [
            AttemptInfo(
                batch_id=row.batch_id,
                job_id=row.job_id,
                attempt=row.attempt,
                instance_name=row.instance_name,
                start_time=row.start_time,
                end_time=row.end_time,
                end_reason=row.end_reason,
                staging=row.staging,
            )
            for row in await conn.execute(
                select(Attempt)
                .where(Attempt.batch_id == batch_id, Attempt.job_id == job.job_id)
                .order_by(Attempt.attempt)
            )
        ]
    staged = [a.staging for a in attempts if a.staging]
    files = staging_text(staged[-1]) if staged else None
    return JobDetail(job=job, spec=dict(spec), depends_on=parents, attempts=attempts, files=files)


async def job_log(
    db: Database, batch_id: int, ref: str | int, *, attempt: int | None = None
) -> str:
    """The stored log of a job's last (or given) finished attempt; '' if none was stored."""
    job = await find_job(db, batch_id, ref)
    query = select(JobLog.text).where(JobLog.batch_id == batch_id, JobLog.job_id == job.job_id)
    query = (
        query.where(JobLog.attempt == attempt) if attempt else query.order_by(JobLog.attempt.desc())
    )
    async with db.connect() as conn:
        text = (await conn.execute(query.limit(1))).scalar()
    return text or ""
