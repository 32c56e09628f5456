"""Autoscaler sizing and the pool-level reason a job waits: worked examples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from app.engine.scheduler.autoscale import (
    CreateInstances,
    CreateReason,
    PoolInstance,
    PoolPendingReason,
    PoolSettings,
    ScalePlan,
    Zone,
    demand_budget_mcpu,
    future_mcpu,
    no_zone_message,
    plan_scale_up,
    why_pending,
)
from app.engine.scheduler.scheduling import QueuedJob, UserQueue

R1, R2, R3 = frozenset({"r1"}), frozenset({"r2"}), frozenset({"r3"})
POOL = PoolSettings(
    "standard",
    worker_cores_mcpu=16_000,
    zones=(Zone("r1-a", "r1"), Zone("r1-b", "r1"), Zone("r2-a", "r2")),
    max_instances=20,
    max_live_instances=10,
    max_new_instances_per_loop=10,
    standing_worker_cores_mcpu=4000,
)
DEMAND, MIN = CreateReason.DEMAND, CreateReason.MIN_INSTANCES


def user(
    name: str, *sizes: int, regions: frozenset[str] | None = None, running: int = 0
) -> UserQueue:
    """A user whose whole Ready queue is jobs of the given sizes."""
    head = [QueuedJob((name, i), size, regions) for i, size in enumerate(sizes)]
    return UserQueue(running, sum(sizes), head)


def scale(
    users: dict[str, UserQueue],
    instances: Sequence[PoolInstance] = (),
    pool: PoolSettings = POOL,
    n_live: int | None = None,
    n_total: int | None = None,
) -> ScalePlan:
    """plan_scale_up with counts taken from the instances unless given."""
    n_live = len(instances) if n_live is None else n_live
    n_total = n_live if n_total is None else n_total
    return plan_scale_up(users, pool, list(instances), n_live=n_live, n_total=n_total)


def created(plan: ScalePlan) -> dict[tuple[str, int, CreateReason], int]:
    """Counts of created instances by (zone, cores, reason)."""
    return {(c.zone, c.cores_mcpu, c.reason): c.count for c in plan.create}


@pytest.mark.parametrize(
    ("n_jobs", "pool", "n_live", "n_total", "expected"),
    [
        (20, POOL, 0, 0, 5),  # 80 cores of demand: 5 workers of 16
        (21, POOL, 0, 0, 6),
        (200, POOL, 0, 0, 10),  # max_new_instances_per_loop
        (200, replace(POOL, max_new_instances_per_loop=3), 0, 0, 3),
        (200, POOL, 8, 8, 2),  # max_live_instances - live
        (200, POOL, 2, 19, 1),  # max_instances - total (dead ones not deleted yet)
        (200, POOL, 10, 10, 0),
        (200, POOL, 12, 12, 0),  # over the limit already: nothing, never negative
    ],
)
def test_demand_creates_within_limits(
    n_jobs: int, pool: PoolSettings, n_live: int, n_total: int, expected: int
) -> None:
    # the live instances are full: only new workers can take the jobs
    full = [PoolInstance(f"i{i}", 0, "r1") for i in range(n_live)]
    plan = scale({"a": user("a", *[4000] * n_jobs)}, full, pool, n_live, n_total)
    assert plan.create == ([CreateInstances("r1-a", 16_000, expected, DEMAND)] if expected else [])


def test_no_demand_keeps_min_instances() -> None:
    pool = replace(POOL, min_instances=3)
    assert created(scale({}, pool=pool)) == {("r1-a", 4000, MIN): 3}
    assert created(scale({}, pool=pool, n_live=1, n_total=2)) == {("r1-a", 4000, MIN): 1}
    assert scale({}, pool=pool, n_live=3).create == []
    assert scale({}).create == []
    no_standing = replace(pool, standing_worker_cores_mcpu=0)
    assert created(scale({}, pool=no_standing)) == {("r1-a", 16_000, MIN): 3}


def test_min_instances_counts_workers_created_for_demand() -> None:
    pool = replace(POOL, min_instances=3)
    plan = scale({"a": user("a", 16_000, 16_000)}, pool=pool)
    assert created(plan) == {("r1-a", 16_000, DEMAND): 2, ("r1-a", 4000, MIN): 1}


def test_booting_and_active_free_cores_are_counted() -> None:
    booting = PoolInstance("boot", 16_000, "r1", booting=True)
    active = PoolInstance("up", 8000, "r1")
    assert scale({"a": user("a", *[4000] * 6)}, [booting, active]).create == []
    plan = scale({"a": user("a", *[4000] * 7)}, [booting, active])
    assert created(plan) == {("r1-a", 16_000, DEMAND): 1}


def test_free_cores_only_count_in_the_jobs_regions() -> None:
    idle_r1 = [PoolInstance(f"i{i}", 16_000, "r1") for i in range(4)]
    plan = scale({"a": user("a", 8000, 8000, 8000, regions=R2)}, idle_r1)
    assert created(plan) == {("r2-a", 16_000, DEMAND): 2}


def test_unconstrained_jobs_use_free_cores_anywhere() -> None:
    idle_r2 = [PoolInstance("i0", 16_000, "r2")]
    assert scale({"a": user("a", 8000, 8000)}, idle_r2).create == []


def test_jobs_the_pool_cannot_run_are_reported() -> None:
    users = {"a": user("a", 1000, regions=R3), "b": user("b", 32_000, 1000)}
    plan = scale(users)
    assert plan.no_zone == {("a", 0): R3}
    assert plan.too_big == [("b", 0)]
    assert created(plan) == {("r1-a", 16_000, DEMAND): 1}  # only for b's small job
    assert no_zone_message("standard", frozenset({"r3", "eu"})) == (
        "no zone of pool standard is in regions [eu, r3]"
    )


def test_a_long_queue_does_not_hide_a_small_users_region() -> None:
    # hail-is/hail#13269: a's long queue must not use up the loop before b's r2 demand
    pool = replace(POOL, max_new_instances_per_loop=2)
    users = {"a": user("a", *[16_000] * 100), "b": user("b", 4000, regions=R2)}
    assert created(scale(users, pool=pool)) == {
        ("r1-a", 16_000, DEMAND): 1,
        ("r2-a", 16_000, DEMAND): 1,
    }


def test_max_new_per_loop_across_regions() -> None:
    pool = replace(POOL, max_new_instances_per_loop=3)
    users = {"a": user("a", *[16_000] * 5, regions=R1), "b": user("b", *[16_000] * 5, regions=R2)}
    plan = scale(users, pool=pool)
    assert sum(c.count for c in plan.create) == 3
    assert {c.zone for c in plan.create} == {"r1-a", "r2-a"}
    assert plan.unmet_mcpu > 0


def test_new_workers_are_bin_packed() -> None:
    plan = scale({"a": user("a", 12_000, 4000, 12_000, 4000)})
    assert created(plan) == {("r1-a", 16_000, DEMAND): 2}


def test_fair_share_limits_what_a_heavy_user_asks_for() -> None:
    # the future cores (free + 1 new worker x 10 loops) are split; a already runs far more
    pool = replace(POOL, max_new_instances_per_loop=1, boot_time_s=150, loop_period_s=15)
    assert future_mcpu(pool, []) == 160_000
    budgets = demand_budget_mcpu({"a": (400_000, 10**9), "b": (0, 10**9)}, pool, [])
    assert budgets == {"a": 0, "b": 160_000}


@pytest.mark.parametrize(
    ("job", "instances", "n_live", "expected"),
    [
        (QueuedJob("j", 32_000), [], 0, PoolPendingReason.NO_POOL_FITS),
        (QueuedJob("j", 1000, R3), [], 0, PoolPendingReason.NO_REGION),
        (
            QueuedJob("j", 4000),
            [PoolInstance("b", 16_000, "r1", booting=True)],
            1,
            PoolPendingReason.WAITING_FOR_VM,
        ),
        (
            QueuedJob("j", 4000, R2),
            [PoolInstance("b", 16_000, "r1", booting=True)],
            10,
            PoolPendingReason.POOL_AT_MAX,
        ),
        (QueuedJob("j", 4000), [PoolInstance("b", 2000, "r1", booting=True)], 1, None),
        (QueuedJob("j", 4000), [PoolInstance("up", 16_000, "r1")], 1, None),
    ],
)
def test_why_pending(
    job: QueuedJob,
    instances: list[PoolInstance],
    n_live: int,
    expected: PoolPendingReason | None,
) -> None:
    assert why_pending(job, POOL, instances, n_live=n_live, n_total=n_live) is expected
