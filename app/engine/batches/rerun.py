"""Run a finished batch's failed jobs again: all of them (`labbatch retry`), or chosen ones as
they were, with more memory or on non-preemptible workers (what the canvas offers on a node)."""

from __future__ import annotations

import math
import time
from collections.abc import Collection

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from app.engine.batches.frontend import locked_batch
from app.engine.marker import bump_marker
from app.errors import UserError
from app.models.db import Database
from app.models.tables import Batch, Job, JobParent, JobState, Update, jobs_table
from app.models.units import MEMORY_GIB_PER_CORE

GIB_BYTES = 1024**3

FAILED = (JobState.FAILED, JobState.ERROR)

_SET_RESOURCES = (
    update(jobs_table)
    .where(jobs_table.c.batch_id == bindparam("b_b"), jobs_table.c.job_id == bindparam("b_j"))
    .values(memory_bytes=bindparam("b_mem"), preemptible=bindparam("b_pre"))
)


def more_memory_bytes(
    memory_bytes: int, memory_class: str | None, cores_mcpu: int, factor: float
) -> int:
    """``factor`` times a job's memory; a job sized by class gets its class's memory per core."""
    if not memory_bytes:
        per_core_gib = MEMORY_GIB_PER_CORE.get(memory_class or "standard", 4)
        memory_bytes = per_core_gib * GIB_BYTES * cores_mcpu // 1000
    return math.ceil(memory_bytes * factor)


async def retry_jobs(
    db: Database,
    batch_id: int,
    job_ids: Collection[int],
    *,
    user: str,
    memory_factor: float = 1.0,
    non_preemptible: bool = False,
) -> int:
    """Run these jobs again if they failed, with the jobs their failure cancelled.

    ``memory_factor`` scales their memory; ``non_preemptible`` keeps them off spot workers.
    Returns how many jobs will run again (0 when none of them failed).
    """
    if memory_factor < 1:
        raise UserError(f"a retry can only give more memory, not {memory_factor:g} times as much")
    now = time.time()

    def store(conn: Connection) -> int:
        batch = locked_batch(conn, batch_id)
        if batch.user != user:
            raise UserError(f"batch {batch_id} belongs to {batch.user}; only they can retry it")
        complete = conn.execute(select(Batch.complete).where(Batch.id == batch_id)).scalar_one()
        if not complete:
            raise UserError(
                f"batch {batch_id} is still running; retry its jobs once it has finished"
            )
        rows = conn.execute(
            select(
                Job.job_id, Job.state, Job.memory_bytes, Job.cores_mcpu, Job.preemptible, Job.spec
            ).where(Job.batch_id == batch_id)
        ).all()
        states = {row.job_id: row.state for row in rows}
        chosen = {j for j in job_ids if states.get(j) in FAILED}
        if not chosen:
            return 0
        rerun = with_cancelled_descendants(conn, batch_id, chosen, states)
        if memory_factor != 1 or non_preemptible:
            by_id = {row.job_id: row for row in rows}
            conn.execute(
                _SET_RESOURCES,
                [
                    {
                        "b_b": batch_id,
                        "b_j": j,
                        "b_mem": more_memory_bytes(
                            by_id[j].memory_bytes,
                            (by_id[j].spec or {}).get("memory_class"),
                            by_id[j].cores_mcpu,
                            memory_factor,
                        )
                        if memory_factor != 1
                        else by_id[j].memory_bytes,
                        "b_pre": False if non_preemptible else by_id[j].preemptible,
                    }
                    for j in sorted(chosen)
                ],
            )
        reset_jobs(conn, batch_id, rerun, states, now)
        bump_marker(conn)
        return len(rerun)

    return await db.run(store)


RERUN_STATES = (JobState.FAILED, JobState.ERROR, JobState.CANCELLED)
_RESET_JOB = (
    update(jobs_table)
    .where(jobs_table.c.batch_id == bindparam("b_b"), jobs_table.c.job_id == bindparam("b_j"))
    .values(
        state=bindparam("b_state"),
        n_pending_parents=bindparam("b_n"),
        cancelled=False,
        n_attempts=0,
        exit_code=None,
        error=None,
        instance_name=None,
        time_ready=bindparam("b_ready"),
        time_ended=None,
    )
)


async def retry_batch(db: Database, batch_id: int, *, user: str, failed_only: bool = False) -> int:
    """Run a finished batch's failed and cancelled jobs again, leaving successes alone.

    With ``failed_only``, only Failed and Error jobs and the jobs that depend on them (which
    ended Cancelled because of them) run again. Returns how many jobs will run again.
    """
    now = time.time()

    def store(conn: Connection) -> int:
        batch = locked_batch(conn, batch_id)
        if batch.user != user:
            raise UserError(f"batch {batch_id} belongs to {batch.user}; only they can retry it")
        complete = conn.execute(select(Batch.complete).where(Batch.id == batch_id)).scalar_one()
        if not complete:
            raise UserError(f"batch {batch_id} is still running; retry it once it has finished")
        rows = conn.execute(select(Job.job_id, Job.state).where(Job.batch_id == batch_id))
        states: dict[int, str] = {job_id: state for job_id, state in rows}
        rerun = _jobs_to_rerun(conn, batch_id, states, failed_only=failed_only)
        if not rerun:
            return 0
        reset_jobs(conn, batch_id, rerun, states, now)
        bump_marker(conn)
        return len(rerun)

    return await db.run(store)


def _jobs_to_rerun(
    conn: Connection, batch_id: int, states: dict[int, str], *, failed_only: bool
) -> set[int]:
    if not failed_only:
        return {j for j, s in states.items() if s in RERUN_STATES}
    failed = {j for j, s in states.items() if s in (JobState.FAILED, JobState.ERROR)}
    return with_cancelled_descendants(conn, batch_id, failed, states)


def with_cancelled_descendants(
    conn: Connection, batch_id: int, jobs: set[int], states: dict[int, str]
) -> set[int]:
    """Jobs and the descendants that ended Cancelled because of them (they never ran)."""
    children: dict[int, list[int]] = {}
    for child, parent in conn.execute(
        select(JobParent.job_id, JobParent.parent_id).where(JobParent.batch_id == batch_id)
    ):
        children.setdefault(parent, []).append(child)
    todo = list(jobs)
    rerun = set(jobs)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in rerun and states[child] == JobState.CANCELLED:
                rerun.add(child)
                todo.append(child)
    return rerun


def reset_jobs(
    conn: Connection, batch_id: int, rerun: set[int], states: dict[int, str], now: float
) -> None:
    """Back to Pending/Ready with a fresh attempt budget; the batch runs again."""
    pending: dict[int, int] = dict.fromkeys(rerun, 0)
    for child, parent in conn.execute(
        select(JobParent.job_id, JobParent.parent_id).where(
            JobParent.batch_id == batch_id, JobParent.job_id.in_(list(rerun))
        )
    ):
        if parent in rerun or states[parent] != JobState.SUCCESS:
            pending[child] += 1
    conn.execute(
        _RESET_JOB,
        [
            {
                "b_b": batch_id,
                "b_j": job_id,
                "b_state": str(JobState.READY if n == 0 else JobState.PENDING),
                "b_n": n,
                "b_ready": now if n == 0 else None,
            }
            for job_id, n in pending.items()
        ],
    )
    n_failed = sum(1 for j in rerun if states[j] in (JobState.FAILED, JobState.ERROR))
    n_cancelled = len(rerun) - n_failed
    n_updates = conn.execute(select(Batch.n_updates).where(Batch.id == batch_id)).scalar_one()
    conn.execute(
        insert(Update).values(
            batch_id=batch_id,
            update_id=n_updates + 1,
            start_job_id=min(rerun),
            n_jobs=len(rerun),
            committed=True,
            time_created=now,
            time_committed=now,
        )
    )
    conn.execute(
        update(Batch)
        .where(Batch.id == batch_id)
        .values(
            n_updates=n_updates + 1,
            complete=False,
            cancelled=False,
            state="running",
            time_completed=None,
            n_completed=Batch.n_completed - len(rerun),
            n_failed=Batch.n_failed - n_failed,
            n_cancelled=Batch.n_cancelled - n_cancelled,
        )
    )
