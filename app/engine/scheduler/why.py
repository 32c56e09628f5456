""" "Why is my job not running?" — answered from the database, by any process."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from app.engine.batches.frontend import find_job
from app.engine.billing.projects import read_projects
from app.engine.lease import current_holder, holder_user
from app.engine.scheduler.fair_share import allocate
from app.engine.workers import sharing
from app.engine.workers.pools import PoolConfig, last_start_failure, read_pools
from app.models.db import DEFAULT_POOL_NAME, Database
from app.models.tables import Batch, Instance, InstanceState, Job, JobParent, JobState
from app.models.units import format_duration, format_mcpu

MAX_NAMED_PARENTS = 5


@dataclass
class PoolSnapshot:
    """What the pool of a Ready job looks like right now."""

    pool: PoolConfig
    active_free_mcpu: list[int] = field(default_factory=list)
    n_booting: int = 0
    running_by_user: dict[str, int] = field(default_factory=dict)
    ready_by_user: dict[str, int] = field(default_factory=dict)
    ahead_in_queue: int = 0


def why_ready(
    job_cores_mcpu: int,
    user: str,
    snap: PoolSnapshot,
    *,
    driver: bool,
    start_failure: str | None = None,
) -> str:
    """The reason a Ready job waits, from a snapshot of its pool (a pure function)."""
    pool = snap.pool
    largest = max(pool.worker_cores_mcpu, pool.standing_worker_cores_mcpu)
    cores = format_mcpu(job_cores_mcpu)
    if job_cores_mcpu > largest:
        return (
            f"it needs {cores} cores but the largest worker of pool {pool.name} has "
            f"{format_mcpu(largest)}; it will end Error"
        )
    if not driver:
        return "no driver is running for this database: start `labbatch serve` (or the app)"
    n_live = len(snap.active_free_mcpu) + snap.n_booting
    fits_now = any(free >= job_cores_mcpu for free in snap.active_free_mcpu)
    if not fits_now and start_failure is not None:  # no worker started since it failed
        trying = f"; {snap.n_booting} booting now" if snap.n_booting else ""
        return (
            f"pool {pool.name} cannot start workers: {start_failure} "
            f"(LabBatch keeps trying, backing off{trying})"
        )
    if not fits_now and snap.n_booting:
        return f"waiting for a worker of pool {pool.name} to boot ({snap.n_booting} booting)"
    free = sum(snap.active_free_mcpu)
    demand = {u: (snap.running_by_user.get(u, 0), r) for u, r in snap.ready_by_user.items()}
    grants = allocate(free, demand) if demand else {}
    if fits_now and grants.get(user, 0) < job_cores_mcpu and len(demand) > 1:
        running = format_mcpu(snap.running_by_user.get(user, 0))
        return (
            f"waiting for its user's fair share: {user} runs {running} cores and "
            f"{len(demand)} users share pool {pool.name}'s {format_mcpu(free)} free cores"
        )
    if fits_now:
        ahead = (
            f"; {snap.ahead_in_queue} of {user}'s jobs are ahead of it"
            if snap.ahead_in_queue
            else ""
        )
        return f"a worker has room for it: it starts at the next scheduling pass{ahead}"
    if n_live >= min(pool.max_live_instances, pool.max_instances):
        return (
            f"pool {pool.name} is at its maximum of {n_live} worker(s) and none has "
            f"{cores} free cores: waiting for running jobs to finish"
        )
    return (
        f"no worker of pool {pool.name} has {cores} free cores: the autoscaler is adding "
        f"workers (up to {pool.max_instances}, each booting in about "
        f"{format_duration(pool.boot_time_s)})"
    )


async def explain(db: Database, batch_id: int, ref: str | int) -> str:
    """One sentence on what a job is doing and, if it is not running, why."""
    job = await find_job(db, batch_id, ref)
    head = f"job {job.name} ({job.job_id}) of batch {batch_id} is {job.state}"
    if job.state == JobState.PENDING:
        names, n = await db.run(lambda conn: _unfinished_parents(conn, batch_id, job.job_id))
        listed = ", ".join(names) + (", …" if n > len(names) else "")
        return f"{head}: waiting for {n} parent job(s) to finish: {listed}"
    if job.state == JobState.RUNNING:
        return f"{head} on {job.instance_name} (attempt {job.n_attempts})"
    if job.state == JobState.CANCELLED and not job.n_attempts:
        return f"{head}: " + await db.run(lambda conn: _why_cancelled(conn, batch_id, job.job_id))
    if job.state != JobState.READY:
        detail = job.error or (f"exit code {job.exit_code}" if job.exit_code is not None else "")
        return f"{head}" + (f": {detail}" if detail else "")
    snap, user, cores = await db.run(lambda conn: _snapshot(conn, batch_id, job.job_id))
    over = await db.run(lambda conn: _over_limit(conn, batch_id))
    if over is not None:
        return f"{head}: {over}"
    holder = await current_holder(db)
    owner = holder_user(holder) if holder is not None else None
    only = sharing.runs_only(snap.pool, owner, lab=sharing.is_lab(db))
    if only is not None and only != user:
        return (
            f"{head}: in this lab database the local pool {snap.pool.name} runs on {only}'s "
            f"machine and only {only}'s jobs, unless {only} shares it (`labbatch pool set "
            f"{snap.pool.name} --shared`); a cloud pool runs everyone's"
        )
    failure = await last_start_failure(db, snap.pool.name)
    return f"{head}: " + why_ready(
        cores, user, snap, driver=holder is not None, start_failure=failure
    )


def _over_limit(conn: Connection, batch_id: int) -> str | None:
    project = conn.execute(select(Batch.billing_project).where(Batch.id == batch_id)).scalar_one()
    for spend in read_projects(conn):
        if spend.name == project and spend.over_limit:
            return (
                f"billing project {project} has reached its limit; the driver cancels "
                "its batches (raise it with `labbatch billing set`)"
            )
    return None


_NOT_SUCCEEDED = (JobState.FAILED, JobState.ERROR, JobState.CANCELLED)


def _why_cancelled(conn: Connection, batch_id: int, job_id: int) -> str:
    """Why a job that never ran ended Cancelled: a parent that did not succeed, or a cancel."""
    rows = conn.execute(
        select(Job.name, Job.state, Job.exit_code)
        .join(
            JobParent, and_(JobParent.batch_id == Job.batch_id, JobParent.parent_id == Job.job_id)
        )
        .where(
            JobParent.batch_id == batch_id,
            JobParent.job_id == job_id,
            Job.state.in_(_NOT_SUCCEEDED),
        )
        .order_by(Job.job_id)
    ).all()
    if not rows:
        cancelled = conn.execute(select(Batch.cancelled).where(Batch.id == batch_id)).scalar()
        return "the batch was cancelled before it ran" if cancelled else "it was cancelled"
    parts = []
    for name, state, exit_code in rows[:MAX_NAMED_PARENTS]:
        ended = {"Failed": "failed", "Error": "ended in error", "Cancelled": "was cancelled"}
        code = (
            f" (exit code {exit_code})"
            if state == JobState.FAILED and exit_code is not None
            else ""
        )
        parts.append(f"{name} {ended.get(state, state)}{code}")
    more = f" and {len(rows) - MAX_NAMED_PARENTS} more" if len(rows) > MAX_NAMED_PARENTS else ""
    word = "parent" if len(rows) == 1 else "parents"
    return f"it never ran because its {word} " + ", ".join(parts) + more


def _unfinished_parents(conn: Connection, batch_id: int, job_id: int) -> tuple[list[str], int]:
    rows = conn.execute(
        select(Job.name)
        .join(
            JobParent, and_(JobParent.batch_id == Job.batch_id, JobParent.parent_id == Job.job_id)
        )
        .where(
            JobParent.batch_id == batch_id,
            JobParent.job_id == job_id,
            Job.state.in_([JobState.PENDING, JobState.READY, JobState.RUNNING]),
        )
        .order_by(Job.job_id)
    )
    names = list(rows.scalars())
    return names[:MAX_NAMED_PARENTS], len(names)


def _snapshot(conn: Connection, batch_id: int, job_id: int) -> tuple[PoolSnapshot, str, int]:
    pool_name, user, cores = conn.execute(
        select(Job.pool, Job.user, Job.cores_mcpu).where(
            Job.batch_id == batch_id, Job.job_id == job_id
        )
    ).one()
    snap = PoolSnapshot(pool=read_pools(conn)[pool_name or DEFAULT_POOL_NAME])
    used: dict[str, int] = defaultdict(int)
    running = conn.execute(
        select(Job.instance_name, Job.user, func.sum(Job.cores_mcpu))
        .where(Job.state == JobState.RUNNING, Job.pool == pool_name)
        .group_by(Job.instance_name, Job.user)
    )
    for instance, owner, total in running:
        used[instance or ""] += int(total)
        snap.running_by_user[owner] = snap.running_by_user.get(owner, 0) + int(total)
    for name, state, inst_cores in conn.execute(
        select(Instance.name, Instance.state, Instance.cores_mcpu).where(
            Instance.pool == pool_name,
            Instance.state.in_([InstanceState.PENDING, InstanceState.ACTIVE]),
        )
    ):
        if state == InstanceState.PENDING:
            snap.n_booting += 1
        else:
            snap.active_free_mcpu.append(inst_cores - used.get(name, 0))
    snap.ready_by_user = {
        u: int(t)
        for u, t in conn.execute(
            select(Job.user, func.sum(Job.cores_mcpu))
            .where(Job.state == JobState.READY, Job.pool == pool_name)
            .group_by(Job.user)
        )
    }
    snap.ahead_in_queue = conn.execute(
        select(func.count()).where(
            Job.state == JobState.READY,
            Job.pool == pool_name,
            Job.user == user,
            (Job.batch_id < batch_id) | ((Job.batch_id == batch_id) & (Job.job_id < job_id)),
        )
    ).scalar_one()
    return snap, user, cores
