"""How many instances a pool should create: a pure function over plain data.

Follows Hail's autoscaler: estimate what the head of each user's Ready queue will need during the
next VM boot under fair share, subtract the free cores of instances that are up or booting, and
create workers within the pool's limits; then keep `min_instances` standing. Unlike Hail, a job
only counts free cores in its own regions and new instances are bin-packed per region, so demand
for one region never hides behind capacity in another (hail-is/hail#13269), and demand no zone of
the pool can serve is reported back instead of waiting forever.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from app.engine.scheduler.fair_share import allocate
from app.engine.scheduler.placement import FreeCores
from app.engine.scheduler.scheduling import QueuedJob, UserQueue


@dataclass(frozen=True, slots=True)
class Zone:
    """A zone a pool may create instances in, and its region."""

    name: str
    region: str


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """The autoscaler's view of one pool; `zones` in order of preference."""

    name: str
    worker_cores_mcpu: int
    zones: tuple[Zone, ...]
    min_instances: int = 0
    max_instances: int = 10
    max_live_instances: int = 10
    max_new_instances_per_loop: int = 10
    standing_worker_cores_mcpu: int = 0
    boot_time_s: float = 150.0
    loop_period_s: float = 15.0


@dataclass(frozen=True, slots=True)
class PoolInstance:
    """A live instance of the pool: booting (pending) or active, its free cores and region."""

    name: str
    free_mcpu: int
    region: str
    booting: bool = False


class CreateReason(StrEnum):
    """Why instances are created."""

    DEMAND = "demand"
    MIN_INSTANCES = "min_instances"


@dataclass(frozen=True, slots=True)
class CreateInstances:
    """Create `count` instances of `cores_mcpu` in `zone`."""

    zone: str
    cores_mcpu: int
    count: int
    reason: CreateReason


@dataclass(frozen=True, slots=True)
class ScalePlan:
    """Instances to create, and Ready jobs the pool can never run (for the engine to end)."""

    create: list[CreateInstances]
    no_zone: dict[Hashable, frozenset[str]] = field(default_factory=dict)  # job -> its regions
    too_big: list[Hashable] = field(default_factory=list)  # jobs over worker_cores_mcpu
    unmet_mcpu: int = 0  # estimated demand left without room after the limits


class PoolPendingReason(StrEnum):
    """Why a Ready job waits, as far as the pool is concerned."""

    WAITING_FOR_VM = "waiting_for_vm"  # a booting instance in its regions will fit it
    POOL_AT_MAX = "pool_at_max"  # the pool may not create more instances
    NO_POOL_FITS = "no_pool_fits"  # bigger than the pool's worker cores
    NO_REGION = "no_region"  # no zone of the pool is in its regions


def no_zone_message(pool: str, regions: frozenset[str]) -> str:
    """The error a job gets when no zone of its pool is in its regions."""
    return f"no zone of pool {pool} is in regions [{', '.join(sorted(regions))}]"


def future_mcpu(pool: PoolSettings, instances: Sequence[PoolInstance]) -> int:
    """Cores the pool could offer by the end of the next boot: free now plus what it can create."""
    loops = max(1, math.ceil(pool.boot_time_s / max(pool.loop_period_s, 1e-3)))
    free = sum(max(0, i.free_mcpu) for i in instances)
    return free + pool.worker_cores_mcpu * pool.max_new_instances_per_loop * loops


def demand_budget_mcpu(
    users: Mapping[str, tuple[int, int]], pool: PoolSettings, instances: Sequence[PoolInstance]
) -> dict[str, int]:
    """Cores of each user's Ready head the estimate looks at (its share of the future cores).

    Pass the autoscaler each user's head cut with `scheduling.cut_head` at this budget.
    """
    return allocate(future_mcpu(pool, instances), users)


def plan_scale_up(
    users: Mapping[str, UserQueue],
    pool: PoolSettings,
    instances: Sequence[PoolInstance],
    *,
    n_live: int,
    n_total: int,
) -> ScalePlan:
    """Decide which instances to create this autoscaler loop.

    n_live counts booting and active instances, n_total every instance not yet deleted.
    """
    room = min(
        pool.max_live_instances - n_live,
        pool.max_instances - n_total,
        pool.max_new_instances_per_loop,
    )
    room = max(0, room)
    jobs, no_zone, too_big = _estimate(users, pool, instances)
    create, unmet_mcpu = _create_for_demand(jobs, pool, instances, room)
    created = sum(c.count for c in create)
    standing = min(pool.min_instances - n_total - created, room - created)
    if standing > 0 and pool.zones:
        cores = pool.standing_worker_cores_mcpu or pool.worker_cores_mcpu
        create.append(
            CreateInstances(pool.zones[0].name, cores, standing, CreateReason.MIN_INSTANCES)
        )
    return ScalePlan(create, no_zone, too_big, unmet_mcpu)


def _estimate(
    users: Mapping[str, UserQueue],
    pool: PoolSettings,
    instances: Sequence[PoolInstance],
) -> tuple[list[QueuedJob], dict[Hashable, frozenset[str]], list[Hashable]]:
    """The head jobs fair share would start before the next boot, in the order they would start.

    Each user gets its share of the future cores; a job's turn is the fraction of that share its
    user has used before it, so users interleave as repeated scheduling passes would.
    """
    regions = {z.region for z in pool.zones}
    demand = {name: (q.running_mcpu, q.ready_mcpu) for name, q in users.items()}
    shares = allocate(future_mcpu(pool, instances), demand)
    turns: list[tuple[float, str, int, QueuedJob]] = []
    no_zone: dict[Hashable, frozenset[str]] = {}
    too_big: list[Hashable] = []
    for name, q in users.items():
        share, used = shares[name], 0
        for pos, job in enumerate(q.head):
            if job.cores_mcpu > pool.worker_cores_mcpu:
                too_big.append(job.key)
            elif job.regions is not None and job.regions.isdisjoint(regions):
                no_zone[job.key] = job.regions
            elif used < share:
                turns.append((used / share, name, pos, job))
                used += job.cores_mcpu
    turns.sort(key=lambda t: t[:3])
    return [t[3] for t in turns], no_zone, too_big


def _create_for_demand(
    jobs: list[QueuedJob],
    pool: PoolSettings,
    instances: Sequence[PoolInstance],
    room: int,
) -> tuple[list[CreateInstances], int]:
    """Best-fit the jobs on live instances, then on new workers while room lasts.

    Returns the instances to create per zone and the cores of the jobs left without room.
    """
    live = FreeCores()
    for inst in instances:
        live.add(inst.name, inst.free_mcpu, inst.region)
    new = FreeCores()
    zone_of_new: dict[str, str] = {}
    unmet = 0
    for job in jobs:
        if live.place(job.cores_mcpu, job.regions) is not None:
            continue
        if new.place(job.cores_mcpu, job.regions) is not None:
            continue
        if len(zone_of_new) < room:
            zone = _zone_for(job, pool)
            name = f"new-{len(zone_of_new)}"
            zone_of_new[name] = zone.name
            new.add(name, pool.worker_cores_mcpu - job.cores_mcpu, zone.region)
        else:
            unmet += job.cores_mcpu
    counts = Counter(zone_of_new.values())
    create = [
        CreateInstances(zone, pool.worker_cores_mcpu, n, CreateReason.DEMAND)
        for zone, n in counts.items()
    ]
    return create, unmet


def _zone_for(job: QueuedJob, pool: PoolSettings) -> Zone:
    """The pool's most preferred zone in the job's regions (callers ensure there is one)."""
    return next(z for z in pool.zones if job.regions is None or z.region in job.regions)


def why_pending(
    job: QueuedJob,
    pool: PoolSettings,
    instances: Sequence[PoolInstance],
    *,
    n_live: int,
    n_total: int,
) -> PoolPendingReason | None:
    """The pool-level reason a Ready job waits, or None (then the scheduler's reason applies)."""
    if job.cores_mcpu > pool.worker_cores_mcpu:
        return PoolPendingReason.NO_POOL_FITS
    if job.regions is not None and all(z.region not in job.regions for z in pool.zones):
        return PoolPendingReason.NO_REGION
    for inst in instances:
        allowed = job.regions is None or inst.region in job.regions
        if inst.booting and allowed and inst.free_mcpu >= job.cores_mcpu:
            return PoolPendingReason.WAITING_FOR_VM
    if n_live >= pool.max_live_instances or n_total >= pool.max_instances:
        return PoolPendingReason.POOL_AT_MAX
    return None
