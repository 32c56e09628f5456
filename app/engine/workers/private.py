"""Job-private instances: a job that names a machine type gets a worker of its own.

Its job goes Ready -> Creating while the worker boots, back to Ready once it is up (the pass
then places it on that worker alone), and the worker retires after the job. Workers are
shared among users by fair share in number of jobs, within the pool's limits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.engine import Connection

from app.engine.scheduler.fair_share import allocate
from app.models.tables import COMPLETE_STATES, Job, JobState, jobs_table

MIN_WORKER_MCPU = 250


@dataclass(frozen=True, slots=True)
class PrivateJob:
    """A Ready job that will get its own worker."""

    key: tuple[int, int]
    user: str
    cores_mcpu: int
    machine_type: str | None


def choose(ready: Iterable[PrivateJob], live_by_user: Counter[str], room: int) -> list[PrivateJob]:
    """Which Ready jobs get a worker now: fair share in number of jobs (a pure function)."""
    queues: dict[str, list[PrivateJob]] = {}
    for job in ready:
        queues.setdefault(job.user, []).append(job)
    grants = allocate(
        max(0, room), {u: (live_by_user.get(u, 0), len(jobs)) for u, jobs in queues.items()}
    )
    return [job for user, jobs in queues.items() for job in jobs[: grants.get(user, 0)]]


_READY = (
    select(Job.batch_id, Job.job_id, Job.user, Job.cores_mcpu, Job.machine_type)
    .where(Job.state == str(JobState.READY), Job.pool == bindparam("b_pool"))
    .order_by(Job.batch_id, Job.job_id)
    .limit(bindparam("b_limit"))
)


def ready_jobs(conn: Connection, pool: str, limit: int) -> list[PrivateJob]:
    rows = conn.execute(_READY, {"b_pool": pool, "b_limit": limit})
    return [
        PrivateJob((b, j), user, max(MIN_WORKER_MCPU, cores), machine)
        for b, j, user, cores, machine in rows
    ]


def set_state(conn: Connection, key: tuple[int, int], old: JobState, new: JobState) -> bool:
    """Move one job between Ready and Creating; False if it was no longer in ``old``."""
    result = conn.execute(
        update(jobs_table)
        .where(
            jobs_table.c.batch_id == key[0],
            jobs_table.c.job_id == key[1],
            jobs_table.c.state == str(old),
        )
        .values(state=str(new))
    )
    return (result.rowcount or 0) == 1


def finished(conn: Connection, keys: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """The jobs among ``keys`` that have ended (their workers can go)."""
    wanted = set(keys)
    if not wanted:
        return set()
    live = {
        (b, j)
        for b, j in conn.execute(
            select(Job.batch_id, Job.job_id).where(
                tuple_(Job.batch_id, Job.job_id).in_(list(wanted)),
                Job.state.not_in([str(s) for s in COMPLETE_STATES]),
            )
        )
    }
    return wanted - live


def reset_creating(conn: Connection, pool: str) -> None:
    """After a restart no worker is booting for anyone: Creating jobs go back to Ready."""
    conn.execute(
        update(jobs_table)
        .where(jobs_table.c.pool == pool, jobs_table.c.state == str(JobState.CREATING))
        .values(state=str(JobState.READY))
    )
