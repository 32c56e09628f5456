"""Dashboard samples: cores, fair shares, instances, jobs and spend at one moment.

`read_sample` is one read transaction of aggregate queries, each served by an index (running
jobs by `ix_jobs_running`, ready demand by `ix_jobs_ready_queue`, jobs of unfinished batches by
`ix_jobs_batch_state`). Costs scan every attempt, so callers ask for them only every few samples
and carry the previous figures in between. The driver stores a sample every few seconds so that
a desktop opened later can show the last day.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from app.engine.billing.costs import cost_by_day, costs_by
from app.engine.scheduler.fair_share import allocate
from app.models.tables import (
    Batch,
    BillingProject,
    Instance,
    InstanceState,
    Job,
    JobState,
    MetricSample,
)

KEEP_SAMPLES_S = 25 * 3600  # the longest dashboard window is a day
_RUNNING = (JobState.CREATING, JobState.RUNNING)


@dataclass(frozen=True, slots=True)
class Budget:
    """A billing project's spend against its limit."""

    spent_usd: float
    limit_usd: float | None

    @property
    def fraction(self) -> float | None:
        if not self.limit_usd:
            return None
        return self.spent_usd / self.limit_usd


@dataclass(frozen=True, slots=True)
class MetricsSample:
    """What the dashboard plots at one moment. Money is float here: it is for plotting only."""

    time: float
    cores_in_use_mcpu: int = 0
    cores_free_mcpu: int = 0
    cores_booting_mcpu: int = 0
    in_use_by_user_mcpu: dict[str, int] = field(default_factory=dict)
    share_by_user_mcpu: dict[str, int] = field(default_factory=dict)
    instances_by_state: dict[str, int] = field(default_factory=dict)
    jobs_by_state: dict[str, int] = field(default_factory=dict)
    cost_by_user_usd: dict[str, float] = field(default_factory=dict)
    cost_by_project_usd: dict[str, float] = field(default_factory=dict)
    budgets: dict[str, Budget] = field(default_factory=dict)
    spend_today_usd: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricsSample:
        values = dict(data)
        values["budgets"] = {k: Budget(**v) for k, v in (values.get("budgets") or {}).items()}
        return cls(**values)

    def with_costs_of(self, earlier: MetricsSample) -> MetricsSample:
        """This sample with the spend figures of an earlier one (costs are read less often)."""
        return replace(
            self,
            cost_by_user_usd=earlier.cost_by_user_usd,
            cost_by_project_usd=earlier.cost_by_project_usd,
            budgets=earlier.budgets,
            spend_today_usd=earlier.spend_today_usd,
        )


def _running_by_instance(
    conn: Connection, cores_of: dict[str, int]
) -> list[tuple[str | None, str, int]]:
    """Cores of Running jobs per (instance, user), never more on an instance than its cores.

    Under a stream of short jobs the driver places some ahead of a full worker, which queues
    them (see instances.QUEUE_FACTOR): they are Running in the table without holding a core.
    Each user's figure on an over-full instance is scaled down in proportion.
    """
    rows = [
        (instance, user, int(mcpu))
        for instance, user, mcpu in conn.execute(
            select(Job.instance_name, Job.user, func.sum(Job.cores_mcpu))
            .where(Job.state.in_(_RUNNING))
            .group_by(Job.instance_name, Job.user)
        )
    ]
    held: dict[str | None, int] = defaultdict(int)
    for instance, _user, mcpu in rows:
        held[instance] += mcpu
    return [
        (instance, user, mcpu * cores // held[instance])
        if (cores := cores_of.get(instance or "")) is not None and held[instance] > cores
        else (instance, user, mcpu)
        for instance, user, mcpu in rows
    ]


def read_sample(conn: Connection, *, now: float | None = None, costs: bool = True) -> MetricsSample:
    """Read one sample; ``costs=False`` leaves the spend figures empty."""
    now = time.time() if now is None else now
    capacity: dict[str, int] = defaultdict(int)  # active cores per pool
    pool_of: dict[str, str] = {}
    cores_of: dict[str, int] = {}  # active instance -> its cores
    booting = 0
    by_state: dict[str, int] = defaultdict(int)
    for name, pool, state, cores in conn.execute(
        select(Instance.name, Instance.pool, Instance.state, Instance.cores_mcpu).where(
            Instance.state != InstanceState.DELETED
        )
    ):
        by_state[state] += 1
        if state == InstanceState.ACTIVE:
            capacity[pool] += cores
            pool_of[name] = pool
            cores_of[name] = int(cores)
        elif state == InstanceState.PENDING:
            booting += cores

    running: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # pool→user→mcpu
    in_use_by_user: dict[str, int] = defaultdict(int)
    in_use_active = 0
    for instance, user, mcpu in _running_by_instance(conn, cores_of):
        in_use_by_user[user] += int(mcpu)
        instance_pool = pool_of.get(instance or "")
        if instance_pool is not None:
            running[instance_pool][user] += int(mcpu)
            in_use_active += int(mcpu)

    ready: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for job_pool, user, mcpu in conn.execute(
        select(Job.pool, Job.user, func.sum(Job.cores_mcpu))
        .where(Job.state == JobState.READY)
        .group_by(Job.pool, Job.user)
    ):
        ready[job_pool or ""][user] += int(mcpu)

    jobs_by_state = {
        state: int(n)
        for state, n in conn.execute(
            select(Job.state, func.count())
            .where(Job.batch_id.in_(select(Batch.id).where(Batch.complete.is_(False))))
            .group_by(Job.state)
        )
    }
    sample = MetricsSample(
        time=now,
        cores_in_use_mcpu=sum(in_use_by_user.values()),
        cores_free_mcpu=max(0, sum(capacity.values()) - in_use_active),
        cores_booting_mcpu=booting,
        in_use_by_user_mcpu=dict(in_use_by_user),
        share_by_user_mcpu=fair_shares(capacity, running, ready),
        instances_by_state=dict(by_state),
        jobs_by_state=jobs_by_state,
    )
    return replace(sample, **_spend(conn)) if costs else sample


def fair_shares(
    capacity_mcpu: Mapping[str, int],
    running_mcpu: Mapping[str, Mapping[str, int]],
    ready_mcpu: Mapping[str, Mapping[str, int]],
) -> dict[str, int]:
    """Each user's fair share of every pool's cores, summed over pools.

    A user's share in a pool is what water-filling the pool's whole capacity over the users'
    demands (running + ready cores) gives: the cores the scheduler steers that user towards.
    """
    shares: dict[str, int] = defaultdict(int)
    for pool, cores in capacity_mcpu.items():
        users = set(running_mcpu.get(pool, {})) | set(ready_mcpu.get(pool, {}))
        demand = {
            user: (
                0,
                running_mcpu.get(pool, {}).get(user, 0) + ready_mcpu.get(pool, {}).get(user, 0),
            )
            for user in users
        }
        for user, granted in allocate(cores, demand).items():
            shares[user] += granted
    return dict(shares)


def _spend(conn: Connection) -> dict[str, Any]:
    by_project = costs_by(conn, "billing_project")
    limits = dict(conn.execute(select(BillingProject.name, BillingProject.limit_usd)).all())
    today = datetime.now(UTC).date().isoformat()
    return {
        "cost_by_user_usd": {k: float(v) for k, v in costs_by(conn, "user").items()},
        "cost_by_project_usd": {k: float(v) for k, v in by_project.items()},
        "budgets": {
            name: Budget(
                spent_usd=float(by_project.get(name, 0)),
                limit_usd=None if limit is None else float(limit),
            )
            for name, limit in limits.items()
        },
        "spend_today_usd": float(cost_by_day(conn, days=1).get(today, 0)),
    }


def store_sample(conn: Connection, sample: MetricsSample) -> None:
    """Keep a sample for later windows, and forget the ones older than a day."""
    conn.execute(insert(MetricSample).values(time=sample.time, data=sample.to_json()))
    conn.execute(delete(MetricSample).where(MetricSample.time < sample.time - KEEP_SAMPLES_S))


def read_history(conn: Connection, *, since: float) -> list[MetricsSample]:
    """The stored samples from ``since`` on, oldest first."""
    rows = conn.execute(
        select(MetricSample.data).where(MetricSample.time >= since).order_by(MetricSample.time)
    )
    return [MetricsSample.from_json(data) for (data,) in rows]


def budgets_crossed(
    before: Mapping[str, Budget], after: Mapping[str, Budget], *, threshold: float = 0.8
) -> list[str]:
    """Projects whose spend passed ``threshold`` of their limit between two samples."""
    crossed = []
    for name, budget in after.items():
        now_fraction = budget.fraction
        if now_fraction is None or now_fraction < threshold:
            continue
        previous = before.get(name)
        was = previous.fraction if previous is not None else None
        if was is None or was < threshold:
            crossed.append(name)
    return sorted(crossed)
