"""Billing in the database: versioned rates, quantities per attempt, cost as it accrues.

Cost of an attempt = Σ quantity * rate * (end, or now while it runs, - start): nothing is
rolled up, so a running job's cost grows with every query and a price change never rewrites
the past (each attempt keeps the rate versions it started with).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, insert, literal, select
from sqlalchemy.engine import Connection

from app.engine.billing import rates as billing
from app.engine.billing.forecast import Estimate, estimate_batch
from app.engine.billing.rates import Rate
from app.engine.workers.pools import PoolConfig
from app.models.bulk import bulk_insert
from app.models.spec import JobSpec
from app.models.tables import (
    Attempt,
    AttemptResource,
    Batch,
    CloudPrice,
    Resource,
    attempt_resources_table,
)

SECONDS_PER_HOUR = Decimal(3600)
# the scale of resources.usd_per_unit_hour: a price is compared with its stored version at this
# scale, else a monthly price / 730 (more decimals than the column keeps) would read as changed
# and add a version at every sync
RATE_QUANTUM = Decimal("1e-12")


RefreshedPrices = Mapping[str, Mapping[str, Decimal]]  # cloud -> resource -> USD per unit-hour


def pool_rates(pool: PoolConfig, refreshed: RefreshedPrices | None = None) -> dict[str, Decimal]:
    """The USD per unit-hour of what a pool's workers bill (local: its own compute price).

    A cloud pool's come from its cloud's price file, overridden by the prices ``refreshed``
    from the cloud's catalogue (``refreshed_prices``)."""
    if pool.cloud != "local":
        rates = billing.load_price_table(pool.cloud)
        rates.update((refreshed or {}).get(pool.cloud, {}))
        return rates
    rates = billing.local_rates(pool.price_per_core_hour_usd)
    rates[_local_compute(pool)] = rates.pop(billing.LOCAL_COMPUTE)
    return rates


def pool_quantities(
    pool: PoolConfig, *, cores_mcpu: int, memory_bytes: int, storage_bytes: int, preemptible: bool
) -> dict[str, Decimal]:
    """What one attempt on this pool uses per hour."""
    quantities = billing.attempt_quantities(
        cloud=pool.cloud,
        family_or_size=billing.machine_family(pool.machine_type or "local"),
        region=(pool.regions or ("local",))[0],
        preemptible=preemptible and pool.preemptible,
        worker_cores_mcpu=max(pool.worker_cores_mcpu, cores_mcpu),
        cores_mcpu=cores_mcpu,
        memory_bytes=memory_bytes,
        storage_bytes=storage_bytes,
    )
    if billing.LOCAL_COMPUTE in quantities:
        quantities[_local_compute(pool)] = quantities.pop(billing.LOCAL_COMPUTE)
    return quantities


def estimate_on_pool(
    jobs: Sequence[JobSpec],
    pool: PoolConfig,
    *,
    default_duration_s: float = 60.0,
    refreshed: RefreshedPrices | None = None,
) -> Estimate:
    """The expected cost and time range of jobs on a pool of its size, at its prices."""
    by_shape: dict[tuple[int, int, int, bool], dict[str, Decimal]] = {}

    def quantities_for(job: JobSpec) -> dict[str, Decimal]:
        shape = (job.cores_mcpu, job.memory_bytes, job.storage_bytes, job.preemptible)
        if shape not in by_shape:
            by_shape[shape] = pool_quantities(
                pool,
                cores_mcpu=job.cores_mcpu,
                memory_bytes=job.memory_bytes,
                storage_bytes=job.storage_bytes,
                preemptible=job.preemptible,
            )
        return by_shape[shape]

    return estimate_batch(
        jobs,
        worker_cores_mcpu=pool.worker_cores_mcpu,
        n_workers=max(1, pool.max_instances),
        rates=pool_rates(pool, refreshed),
        quantities_for=quantities_for,
        default_duration_s=default_duration_s,
        pool=pool.name,
    )


def _local_compute(pool: PoolConfig) -> str:
    return f"{billing.LOCAL_COMPUTE}/{pool.name}"


def refreshed_prices(conn: Connection) -> dict[str, dict[str, Decimal]]:
    """The list prices last read from each cloud's catalogue: cloud -> resource -> USD/hour."""
    prices: dict[str, dict[str, Decimal]] = defaultdict(dict)
    query = select(CloudPrice.cloud, CloudPrice.resource, CloudPrice.usd_per_unit_hour)
    for cloud, resource, usd in conn.execute(query):
        prices[cloud][resource] = Decimal(str(usd))
    return dict(prices)


def stored_rates(conn: Connection) -> dict[str, Rate]:
    """The newest stored version of every rate."""
    return billing.latest_rates(
        Rate(r.name, r.version, Decimal(str(r.usd_per_unit_hour)))
        for r in conn.execute(select(Resource.name, Resource.version, Resource.usd_per_unit_hour))
    )


def sync_rates(conn: Connection, pools: Iterable[PoolConfig]) -> dict[str, Rate]:
    """Store new versions of the pools' rates that changed; return the latest of each.

    A cloud's prices are its price file's, overridden by those refreshed from its catalogue."""
    current = stored_rates(conn)
    refreshed = refreshed_prices(conn)
    wanted: dict[str, Decimal] = {}
    for pool in pools:
        wanted.update(pool_rates(pool, refreshed))
    wanted = {resource: usd.quantize(RATE_QUANTUM) for resource, usd in wanted.items()}
    new = billing.versioned_updates(current, wanted)
    if new:
        now = time.time()
        conn.execute(
            insert(Resource),
            [
                {
                    "name": r.resource,
                    "version": r.version,
                    "usd_per_unit_hour": r.usd_per_unit_hour,
                    "time_created": now,
                }
                for r in new
            ],
        )
    return billing.latest_rates([*current.values(), *new])


def record_quantities(
    conn: Connection,
    attempts: Sequence[tuple[int, int, int, Mapping[str, Decimal]]],
    rates: Mapping[str, Rate],
) -> None:
    """Store each new attempt's quantities at the current rate versions."""
    rows = [
        (b, j, a, resource, rates[resource].version, quantity)
        for b, j, a, quantities in attempts
        for resource, quantity in quantities.items()
        if resource in rates
    ]
    bulk_insert(
        conn,
        attempt_resources_table,
        ("batch_id", "job_id", "attempt", "resource", "version", "quantity"),
        rows,
    )


# ---------------------------------------------------------------------------------------------
# Reading cost


def _cost_usd_expr(now: float) -> Any:
    """Σ quantity * rate * hours, with running attempts counted up to ``now``."""
    seconds = func.coalesce(Attempt.end_time, literal(now)) - Attempt.start_time
    return func.coalesce(
        func.sum(AttemptResource.quantity * Resource.usd_per_unit_hour * seconds), 0
    )


def _joined(query: Any) -> Any:
    return (
        query.select_from(AttemptResource)
        .join(
            Attempt,
            and_(
                Attempt.batch_id == AttemptResource.batch_id,
                Attempt.job_id == AttemptResource.job_id,
                Attempt.attempt == AttemptResource.attempt,
            ),
        )
        .join(
            Resource,
            and_(
                Resource.name == AttemptResource.resource,
                Resource.version == AttemptResource.version,
            ),
        )
        .join(Batch, Batch.id == AttemptResource.batch_id)
        .where(Attempt.start_time.is_not(None))
    )


def _usd(value: Any) -> Decimal:
    return (Decimal(str(value or 0)) / SECONDS_PER_HOUR).quantize(Decimal("1e-9"))


def costs_by(
    conn: Connection,
    key: str,
    *,
    batch_id: int | None = None,
    billing_project: str | None = None,
    batch_ids: Collection[int] | None = None,
    job_ids: tuple[int, int] | None = None,
    instance_names: Collection[str] | None = None,
) -> dict[Any, Decimal]:
    """Cost so far grouped by "batch", "job" (of one batch), "user", "billing_project" or
    "instance" (the worker the attempts ran on).

    ``batch_ids`` limits it to some batches; ``job_ids`` (first, last) to a range of job ids;
    ``instance_names`` to attempts on some workers.
    """
    column = {
        "batch": Batch.id,
        "job": AttemptResource.job_id,
        "user": Batch.user,
        "billing_project": Batch.billing_project,
        "instance": Attempt.instance_name,
    }[key]
    query = _joined(select(column, _cost_usd_expr(time.time()))).group_by(column)
    if batch_id is not None:
        query = query.where(AttemptResource.batch_id == batch_id)
    if billing_project is not None:
        query = query.where(Batch.billing_project == billing_project)
    if batch_ids is not None:
        query = query.where(AttemptResource.batch_id.in_(list(batch_ids)))
    if job_ids is not None:
        query = query.where(AttemptResource.job_id.between(*job_ids))
    if instance_names is not None:
        query = query.where(Attempt.instance_name.in_(list(instance_names)))
    return {k: _usd(v) for k, v in conn.execute(query)}


def running_usd_per_hour_by_instance(
    conn: Connection, instance_names: Collection[str]
) -> dict[str, Decimal]:
    """What the attempts running on each worker cost per hour, at the rates they started with
    (a view carries "cost so far" forward with it between two reads)."""
    rate = func.sum(AttemptResource.quantity * Resource.usd_per_unit_hour)
    query = (
        _joined(select(Attempt.instance_name, rate))
        .where(Attempt.end_time.is_(None), Attempt.instance_name.in_(list(instance_names)))
        .group_by(Attempt.instance_name)
    )
    return {name: Decimal(str(v or 0)) for name, v in conn.execute(query)}


def cost_by_day(conn: Connection, *, days: int = 30) -> dict[str, Decimal]:
    """Cost per UTC day over the last ``days`` days, each attempt split across the days it ran."""
    now = time.time()
    since = now - days * 86400
    hourly = func.sum(AttemptResource.quantity * Resource.usd_per_unit_hour)
    query = _joined(
        select(Attempt.start_time, func.coalesce(Attempt.end_time, literal(now)), hourly)
    ).where(func.coalesce(Attempt.end_time, literal(now)) >= since)
    query = query.group_by(
        Attempt.batch_id, Attempt.job_id, Attempt.attempt, Attempt.start_time, Attempt.end_time
    )
    per_day: dict[str, Decimal] = defaultdict(Decimal)
    for start, end, usd_per_hour in conn.execute(query):
        for day, seconds in _split_by_day(max(start, since), end):
            per_day[day] += Decimal(str(usd_per_hour)) * Decimal(seconds) / SECONDS_PER_HOUR
    return {d: v.quantize(Decimal("0.000001")) for d, v in sorted(per_day.items())}


def _split_by_day(start: float, end: float) -> list[tuple[str, float]]:
    parts = []
    t = start
    while t < end:
        day = datetime.fromtimestamp(t, UTC).date()
        next_day = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        stop = min(end, next_day.timestamp())
        parts.append((day.isoformat(), stop - t))
        t = stop
    return parts


@dataclass(frozen=True, slots=True)
class ProjectSpend:
    """A billing project: who may use it, its limit and what it has spent."""

    name: str
    limit_usd: Decimal | None
    users: tuple[str, ...]
    spent_usd: Decimal

    @property
    def over_limit(self) -> bool:
        return self.limit_usd is not None and self.spent_usd >= self.limit_usd
