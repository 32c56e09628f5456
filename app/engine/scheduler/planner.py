"""The thin loop around the pure scheduler: load each user's queue, plan, build assignments."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from app.engine.batches.completion import JobEnd, chunks
from app.engine.scheduler.autoscale import no_zone_message
from app.engine.scheduler.input_cache import input_preferences
from app.engine.scheduler.placement import Capacity
from app.engine.scheduler.scheduling import (
    MAX_HEAD_JOBS,
    PendingReason,
    QueuedJob,
    UserQueue,
    cut_head,
    head_budget_mcpu,
    plan_pass,
)
from app.engine.workers.instances import Assignment, LiveInstance
from app.engine.workers.pools import PoolConfig, region_of
from app.models.prepared import Prepared
from app.models.tables import RUN_COLUMNS, Job, JobState
from app.protocol import JobRun

MIN_JOB_MCPU = 250
_POOL: BindParameter[str] = bindparam("b_pool")
_USER: BindParameter[str] = bindparam("b_user")

# Ready cores per user in a pool: an index-only scan of ix_jobs_ready_queue
_READY_BY_USER = Prepared(
    select(Job.user, func.sum(Job.cores_mcpu))
    .where(Job.state == str(JobState.READY), Job.pool == _POOL)
    .group_by(Job.user)
)
# lean: the spec (JSON) is read only for the jobs a pass places, in _RUNS
_HEAD_COLUMNS = (
    Job.batch_id,
    Job.job_id,
    Job.cores_mcpu,
    Job.user,
    Job.always_run,
    Job.regions,
    Job.last_attempt,
)
_RUNS = Prepared(
    select(*RUN_COLUMNS, Job.state).where(
        Job.batch_id == bindparam("b_batch"),
        Job.job_id.in_(bindparam("b_ids", expanding=True)),
    ),
    json_columns=["spec"],
)
_HEAD = Prepared(
    select(*_HEAD_COLUMNS)
    .where(Job.state == str(JobState.READY), Job.pool == _POOL, Job.user == _USER)
    .order_by(Job.batch_id, Job.job_id)
    .limit(bindparam("b_limit")),
    json_columns=["regions"],
)
# always_run jobs go first within their batch (ix_jobs_ready_always keeps this cheap)
_HEAD_ALWAYS = Prepared(
    select(*_HEAD_COLUMNS)
    .where(
        Job.state == str(JobState.READY),
        Job.pool == _POOL,
        Job.user == _USER,
        Job.always_run.is_(True),
    )
    .order_by(Job.batch_id, Job.job_id)
    .limit(bindparam("b_limit")),
    json_columns=["regions"],
)
_HEAD_LOCKED = Prepared(_HEAD.statement.with_for_update(skip_locked=True))  # type: ignore[attr-defined]


DEMAND_MAX_AGE_S = 1.0


@dataclass
class DemandCache:
    """Ready cores per user of one pool, re-read only when it may have grown.

    Reading it scans every Ready job of the pool (index-only, but 100,000 of them take
    milliseconds), so between reads it is only reduced by what each pass places.
    """

    ready_mcpu: dict[str, int] = field(default_factory=dict)
    read_at: float = 0.0

    def current(self, conn: Connection, pool: str, *, refresh: bool, now: float) -> dict[str, int]:
        if refresh or now - self.read_at > DEMAND_MAX_AGE_S:
            rows = _READY_BY_USER.execute(conn, {"b_pool": pool})
            self.ready_mcpu = {user: int(total) for user, total in rows}
            self.read_at = now
        return {u: r for u, r in self.ready_mcpu.items() if r > 0}

    def placed(self, user: str, cores_mcpu: int) -> None:
        self.ready_mcpu[user] = self.ready_mcpu.get(user, 0) - cores_mcpu


@dataclass
class PoolPlan:
    """What one pass does in one pool."""

    placed: dict[str, list[Assignment]] = field(default_factory=lambda: defaultdict(list))
    unplaceable: list[JobEnd] = field(default_factory=list)
    pending: dict[Hashable, PendingReason] = field(default_factory=dict)


def plan_pool(
    conn: Connection,
    pool: PoolConfig,
    instances: Sequence[LiveInstance],
    deficits: dict[str, int],
    *,
    running_mcpu: dict[str, int],
    build_run: Callable[[Any, int], JobRun],
    now: float,
    demand: DemandCache,
    refresh: bool,
    only_user: str | None = None,
) -> PoolPlan:
    """Fair share among the pool's users (or only ``only_user``'s jobs: see sharing.py),
    best fit on its healthy instances."""
    result = PoolPlan()
    free = {i.name: max(0, i.free_mcpu) for i in instances}
    if all(f < MIN_JOB_MCPU for f in free.values()):
        # Every instance is full: those running a stream of short jobs may take more for
        # their workers to queue (see QUEUE_FACTOR), so no core waits for the next pass.
        free = {i.name: max(0, i.free_mcpu + i.queue_mcpu(now)) for i in instances}
    free_mcpu = sum(free.values())
    if free_mcpu < MIN_JOB_MCPU:
        return result
    ready = demand.current(conn, pool.name, refresh=refresh, now=now)
    if only_user is not None:
        ready = {only_user: ready[only_user]} if only_user in ready else {}
    if not ready:
        deficits.clear()
        return result
    users = {u: (running_mcpu.get(u, 0), r) for u, r in ready.items()}
    budgets = head_budget_mcpu(free_mcpu, users, deficits)
    rows: dict[Hashable, Any] = {}
    queues: dict[str, UserQueue] = {}
    cached = {i.name: i.cached_inputs for i in instances}
    largest_mcpu = max(pool.worker_cores_mcpu, pool.standing_worker_cores_mcpu)
    for user, budget in budgets.items():
        head = []
        for r in load_head(conn, pool, user, budget):
            if r.cores_mcpu > largest_mcpu:  # no worker of this pool will ever fit it
                result.unplaceable.append(_too_big(r, pool, largest_mcpu, now))
            elif (
                (regions := _regions(pool, r)) and pool.regions and regions.isdisjoint(pool.regions)
            ):  # nor will one in its regions
                error = no_zone_message(pool.name, regions)
                result.unplaceable.append(
                    JobEnd(r.batch_id, r.job_id, JobState.ERROR, now, error=error)
                )
            else:
                head.append(r)
        rows.update({(r.batch_id, r.job_id): r for r in head})
        standard_only_keys = standard_only(conn, pool, head)
        prefer = input_preferences(
            head, cached, pool.scratch, lambda keys: _run_details(conn, keys)
        )
        jobs = [
            QueuedJob(
                (r.batch_id, r.job_id),
                r.cores_mcpu,
                _allowed(pool, _regions(pool, r), (r.batch_id, r.job_id) in standard_only_keys),
                prefer.get((r.batch_id, r.job_id)),
            )
            for r in head
        ]
        queues[user] = UserQueue(users[user][0], users[user][1], cut_head(jobs, budget))
    capacities = [
        Capacity(i.name, free[i.name], _place_of(pool, i), cores_mcpu=i.cores_mcpu)
        for i in instances
    ]
    plan = plan_pass(queues, capacities, deficits)
    deficits.clear()
    deficits.update(plan.deficits_mcpu)
    details = _run_details(conn, list(plan.placements))
    for key, instance_name in plan.placements.items():
        row = rows[key]
        demand.placed(row.user, row.cores_mcpu)
        result.placed[instance_name].append(
            Assignment(build_run(details[key], row.last_attempt + 1), row.user, placed_at=now)
        )
    result.pending.update(plan.pending)
    return result


def place_private(
    conn: Connection, instances: Sequence[LiveInstance], *, build_run: Callable[[Any, int], JobRun]
) -> PoolPlan:
    """Job-private workers: each takes the one job it was created for, once it is Ready."""
    result = PoolPlan()
    waiting = {
        i.reserved_for: i
        for i in instances
        if i.reserved_for is not None and not i.served and not i.assigned
    }
    if not waiting:
        return result
    details = _run_details(conn, list(waiting))
    for key, inst in waiting.items():
        row = details.get(key)
        if row is None or row.state != JobState.READY:
            continue
        result.placed[inst.name].append(
            Assignment(build_run(row, row.last_attempt + 1), inst.reserved_user or "")
        )
    return result


def _run_details(conn: Connection, keys: list[Hashable]) -> dict[Hashable, Any]:
    """What the worker needs to run the placed jobs (command, env, …), one query per batch."""
    by_batch: dict[int, list[int]] = defaultdict(list)
    for key in keys:
        batch_id, job_id = cast(tuple[int, int], key)
        by_batch[batch_id].append(job_id)
    details: dict[Hashable, Any] = {}
    for batch_id, job_ids in by_batch.items():
        for row in _RUNS.execute(conn, {"b_batch": batch_id, "b_ids": job_ids}):
            details[(row.batch_id, row.job_id)] = row
    return details


def load_head(conn: Connection, pool: PoolConfig, user: str, budget_mcpu: int) -> list[Any]:
    """The user's Ready jobs in priority order: oldest batch first, always_run first."""
    limit = min(MAX_HEAD_JOBS, budget_mcpu // MIN_JOB_MCPU + 8)
    params = {"b_pool": pool.name, "b_user": user, "b_limit": limit}
    query = _HEAD_LOCKED if conn.dialect.name == "postgresql" else _HEAD
    regular = query.execute(conn, params)
    always = _HEAD_ALWAYS.execute(conn, params) if regular else []
    if not always:
        return regular
    merged = {(r.batch_id, r.job_id): r for r in [*always, *regular]}
    ordered = sorted(merged.values(), key=lambda r: (r.batch_id, not r.always_run, r.job_id))
    return ordered[:limit]


def _regions(pool: PoolConfig, row: Any) -> frozenset[str] | None:
    """Regions only constrain pools that have them; a local pool runs anything."""
    if pool.cloud == "local" or not row.regions:
        return None
    return frozenset(row.regions)


# In a spot pool, a job that must not be preempted (its retry policy fell back to standard
# after preemptions) may only run on the pool's standard workers. Placement keys free cores by
# location, so a spot worker's location is its region with this suffix, which only jobs that
# may be preempted list among their allowed locations.
SPOT_SUFFIX = "/spot"


def _place_of(pool: PoolConfig, inst: LiveInstance) -> str:
    region = region_of(pool.cloud, inst.location)
    return region + SPOT_SUFFIX if pool.preemptible and inst.preemptible else region


def _allowed(
    pool: PoolConfig, regions: frozenset[str] | None, standard_only: bool
) -> frozenset[str] | None:
    """The placement locations a job may use in ``pool``; None: any."""
    if not pool.preemptible or pool.cloud == "local":
        return regions
    base = regions if regions is not None else frozenset(pool.regions or ())
    if standard_only:
        return base
    return regions if regions is None else regions | {r + SPOT_SUFFIX for r in regions}


def standard_only(conn: Connection, pool: PoolConfig, head: Sequence[Any]) -> set[Hashable]:
    """The head jobs of a spot pool that must run on a standard worker (a few key lookups)."""
    if not pool.preemptible or pool.cloud == "local" or not head:
        return set()
    found: set[Hashable] = set()
    by_batch: dict[int, list[int]] = defaultdict(list)
    for r in head:
        by_batch[r.batch_id].append(r.job_id)
    for batch_id, job_ids in by_batch.items():
        for part in chunks(job_ids):
            found.update(
                (batch_id, job_id)
                for (job_id,) in conn.execute(
                    select(Job.job_id).where(
                        Job.batch_id == batch_id,
                        Job.job_id.in_(list(part)),
                        Job.preemptible.is_(False),
                    )
                )
            )
    return found


def _too_big(row: Any, pool: PoolConfig, largest_mcpu: int, now: float) -> JobEnd:
    return JobEnd(
        row.batch_id,
        row.job_id,
        JobState.ERROR,
        now,
        error=f"needs {row.cores_mcpu / 1000:g} cores but the largest worker of pool "
        f"{pool.name} has {largest_mcpu / 1000:g}",
    )
