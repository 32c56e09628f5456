"""Time one scheduling pass and one autoscaler estimate on a large synthetic pool.

1,000 users, 1,000 instances of 16 cores (partly used, in three regions) and 100,000 Ready jobs
of 0.25-4 cores, 5 % of them pinned to one region. Each user's head is cut the way the driver
should cut it (`head_budget_mcpu` / `demand_budget_mcpu` + `cut_head`); cutting is timed apart.

    python bench/scheduler.py [--users 1000] [--instances 1000] [--jobs 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.scheduler.autoscale import (
    PoolInstance,
    PoolSettings,
    ScalePlan,
    Zone,
    demand_budget_mcpu,
    plan_scale_up,
)
from app.engine.scheduler.placement import Capacity
from app.engine.scheduler.scheduling import (
    QueuedJob,
    UserQueue,
    cut_head,
    head_budget_mcpu,
    plan_pass,
)

SEED = 20240611
WORKER_MCPU = 16_000
REGIONS = ("us-east1", "us-west1", "europe-west1")
SIZES_MCPU = (250, 500, 1000, 2000, 4000)
PASS_TARGET_MS = 20.0
ESTIMATE_TARGET_MS = 50.0


def build(
    n_users: int, n_instances: int, n_jobs: int
) -> tuple[dict[str, list[QueuedJob]], dict[str, int], list[Capacity]]:
    """Queues per user (in priority order), running cores per user, and the instances."""
    rng = random.Random(SEED)
    instances = [
        Capacity(f"i{i}", 250 * rng.randrange(0, 65), REGIONS[i % 3], WORKER_MCPU)
        for i in range(n_instances)
    ]
    used = n_instances * WORKER_MCPU - sum(c.free_mcpu for c in instances)
    names = [f"user{u:04d}" for u in range(n_users)]
    weights = [rng.random() for _ in names]
    running = {n: int(used * w / sum(weights)) for n, w in zip(names, weights, strict=True)}
    queues: dict[str, list[QueuedJob]] = {n: [] for n in names}
    for j in range(n_jobs):
        user = names[rng.randrange(n_users)]
        pinned = frozenset({rng.choice(REGIONS)}) if rng.random() < 0.05 else None
        queues[user].append(QueuedJob(j, rng.choice(SIZES_MCPU), pinned))
    return queues, running, instances


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Best and median wall time of fn in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


def bench_pass(
    queues: dict[str, list[QueuedJob]],
    running: dict[str, int],
    instances: list[Capacity],
    runs: int,
) -> None:
    """Time plan_pass on heads cut as the driver should, fed the deficits of a first pass."""
    ready = {n: sum(j.cores_mcpu for j in q) for n, q in queues.items()}
    totals = {n: (running[n], ready[n]) for n in queues}
    free = sum(c.free_mcpu for c in instances)
    budgets = head_budget_mcpu(free, totals, {})
    cut_ms, _ = timed(lambda: [cut_head(queues[n], budgets[n]) for n in queues], 1)
    users = {n: UserQueue(running[n], ready[n], cut_head(queues[n], budgets[n])) for n in queues}
    first = plan_pass(users, instances, {})
    best, median = timed(lambda: plan_pass(users, instances, first.deficits_mcpu), runs)
    plan = plan_pass(users, instances, first.deficits_mcpu)
    n_head = sum(len(u.head) for u in users.values())
    print(
        f"state: {len(queues)} users, {len(instances)} instances, {sum(map(len, queues.values()))}"
        f" Ready jobs, {free / 1000:.0f} cores free"
    )
    print(
        f"plan_pass:     best {best:6.1f} ms  median {median:6.1f} ms  target <= "
        f"{PASS_TARGET_MS:.0f} ms  {'ok' if best <= PASS_TARGET_MS else 'OVER'}"
        f"  (heads of {n_head} jobs cut in {cut_ms:.1f} ms; {len(plan.placements)} placed, "
        f"{len(plan.pending)} pending, {len(plan.reservations)} reserved)"
    )


def bench_scale_up(
    queues: dict[str, list[QueuedJob]],
    running: dict[str, int],
    instances: list[Capacity],
    runs: int,
) -> None:
    """Time the autoscaler's estimate on heads cut at each user's share of the future cores."""
    pool = PoolSettings(
        "standard",
        WORKER_MCPU,
        tuple(Zone(f"{r}-b", r) for r in REGIONS),
        max_instances=2000,
        max_live_instances=1500,
    )
    ready = {n: sum(j.cores_mcpu for j in q) for n, q in queues.items()}
    live = [PoolInstance(c.name, c.free_mcpu, c.location) for c in instances]
    shares = demand_budget_mcpu({n: (running[n], ready[n]) for n in queues}, pool, live)
    heads = {n: UserQueue(running[n], ready[n], cut_head(queues[n], shares[n])) for n in queues}

    def estimate() -> ScalePlan:
        return plan_scale_up(heads, pool, live, n_live=len(live), n_total=len(live))

    best, median = timed(estimate, runs)
    scale = estimate()
    print(
        f"plan_scale_up: best {best:6.1f} ms  median {median:6.1f} ms  target <= "
        f"{ESTIMATE_TARGET_MS:.0f} ms  {'ok' if best <= ESTIMATE_TARGET_MS else 'OVER'}"
        f"  (heads of {sum(len(u.head) for u in heads.values())} jobs; "
        f"creates {sum(c.count for c in scale.create)} instances)"
    )


def main() -> None:
    """Build the state, time both functions and print them against their targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    queues, running, instances = build(args.users, args.instances, args.jobs)
    bench_pass(queues, running, instances, args.runs)
    bench_scale_up(queues, running, instances, args.runs)


if __name__ == "__main__":
    main()
