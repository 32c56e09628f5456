"""One scheduling pass: worked examples, and fair share reached over repeated passes."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.scheduler.placement import Capacity, Demand, place
from app.engine.scheduler.scheduling import (
    HEAD_EXTRA_JOBS,
    MAX_HEAD_JOBS,
    PassPlan,
    PendingReason,
    QueuedJob,
    UserQueue,
    cut_head,
    head_budget_mcpu,
    plan_pass,
)

WORKER_MCPU = 16_000
QUEUE_JOBS = 256  # enough for any user to fill three instances with 250-mcpu jobs


def jobs(user: str, *sizes: int, regions: frozenset[str] | None = None) -> list[QueuedJob]:
    """Jobs keyed (user, i) of the given sizes."""
    return [QueuedJob((user, i), size, regions) for i, size in enumerate(sizes)]


def queue(head: list[QueuedJob], running_mcpu: int = 0) -> UserQueue:
    """A user whose whole Ready queue is `head`."""
    return UserQueue(running_mcpu, sum(j.cores_mcpu for j in head), head)


def inst(
    name: str, free_mcpu: int, region: str = "r1", cores: int | None = WORKER_MCPU
) -> Capacity:
    """A healthy instance."""
    return Capacity(name, free_mcpu, region, cores)


def placed_mcpu(plan: PassPlan, user: str, users: Mapping[str, UserQueue]) -> int:
    """Cores placed for one user in a plan."""
    return sum(j.cores_mcpu for j in users[user].head if j.key in plan.placements)


class Pool:
    """A tiny simulated pool: instances, running jobs with end times, endless queues per user."""

    def __init__(self, sizes: dict[str, int], durations: dict[str, int], n_instances: int):
        self.sizes, self.durations = sizes, durations
        self.used = {f"i{i}": 0 for i in range(n_instances)}
        self.keys = itertools.count()
        self.queues = {u: [self.job(u) for _ in range(QUEUE_JOBS)] for u in sizes}
        self.running: list[tuple[int, str, int, str]] = []  # (end pass, user, cores, instance)
        self.deficits: dict[str, int] = {}
        self.now = 0

    def job(self, user: str) -> QueuedJob:
        return QueuedJob((user, next(self.keys)), self.sizes[user])

    def running_mcpu(self) -> dict[str, int]:
        return {u: sum(c for _, v, c, _ in self.running if v == u) for u in self.sizes}

    def step(self) -> PassPlan:
        """Finish due jobs, run one pass the way the driver would, start what it placed."""
        for end, _, cores, name in self.running:
            if end <= self.now:
                self.used[name] -= cores
        self.running = [r for r in self.running if r[0] > self.now]
        running = self.running_mcpu()
        caps = [inst(name, WORKER_MCPU - used) for name, used in self.used.items()]
        ready = {u: sum(j.cores_mcpu for j in q) for u, q in self.queues.items()}
        free = sum(c.free_mcpu for c in caps)
        totals = {u: (running[u], ready[u]) for u in self.sizes}
        budgets = head_budget_mcpu(free, totals, self.deficits)
        users = {
            u: UserQueue(running[u], ready[u], cut_head(self.queues[u], budgets[u]))
            for u in self.sizes
        }
        plan = plan_pass(users, caps, self.deficits)
        self.deficits = plan.deficits_mcpu
        for user, q in self.queues.items():
            for j in q:
                if j.key in plan.placements:
                    name = plan.placements[j.key]
                    self.used[name] += j.cores_mcpu
                    assert self.used[name] <= WORKER_MCPU
                    self.running.append((self.now + self.durations[user], user, j.cores_mcpu, name))
            q[:] = [j for j in q if j.key not in plan.placements]
            q.extend(self.job(user) for _ in range(QUEUE_JOBS - len(q)))
        self.now += 1
        return plan


def test_two_users_split_an_empty_instance_equally() -> None:
    users = {"a": queue(jobs("a", *[1000] * 12)), "b": queue(jobs("b", *[1000] * 12))}
    plan = plan_pass(users, [inst("i0", WORKER_MCPU)])
    assert plan.grants_mcpu == {"a": 8000, "b": 8000}
    assert placed_mcpu(plan, "a", users) == placed_mcpu(plan, "b", users) == 8000
    assert set(plan.pending.values()) == {PendingReason.WAITING_FOR_SHARE}


def test_two_users_converge_to_equal_shares() -> None:
    pool = Pool({"a": 1000, "b": 1000}, {"a": 3, "b": 3}, 1)
    pool.running = [(1, "a", 1000, "i0")] * 16  # a holds the whole instance at first
    pool.used["i0"] = WORKER_MCPU
    for _ in range(6):
        pool.step()
    assert pool.running_mcpu() == {"a": 8000, "b": 8000}


def test_user_over_its_share_waits() -> None:
    users = {"a": queue(jobs("a", 1000, 1000), 12_000), "b": queue(jobs("b", 1000, 1000))}
    plan = plan_pass(users, [inst("i0", 2000)])
    assert plan.grants_mcpu == {"a": 0, "b": 2000}
    assert plan.pending == {
        ("a", 0): PendingReason.WAITING_FOR_SHARE,
        ("a", 1): PendingReason.WAITING_FOR_SHARE,
    }


def test_big_job_is_not_starved_by_small_jobs() -> None:
    # seven users keep the instance full of quarter-core jobs that end a core at a time;
    # a's 4-core job gets a core of grant per pass, and no 4-core hole ever opens by itself
    others = "bcdefgh"
    pool = Pool({"a": 4000, **dict.fromkeys(others, 250)}, dict.fromkeys("a" + others, 4), 1)
    pool.running = [(1 + k % 16, others[k % 7], 250, "i0") for k in range(64)]
    pool.used["i0"] = WORKER_MCPU
    reserved = False
    for _ in range(8):
        plan = pool.step()
        reserved = reserved or plan.reservations == {"i0": "a"}
        if pool.running_mcpu()["a"]:
            break
        assert pool.used["i0"] >= WORKER_MCPU - 3000  # small jobs still use the spare cores
    assert pool.running_mcpu()["a"] == 4000, "a's 4-core job never started"
    assert reserved


def test_deficit_carries_until_the_job_fits_the_grant() -> None:
    # a and b both run 4 cores; a's grant of 1.5 cores is half its next job
    users = {"a": queue(jobs("a", 3000), 4000), "b": queue(jobs("b", *[500] * 8), 4000)}
    plan = plan_pass(users, [inst("i0", 3000)])
    assert plan.grants_mcpu == {"a": 1500, "b": 1500}
    assert ("a", 0) not in plan.placements
    assert plan.deficits_mcpu["a"] == 1500
    plan = plan_pass(users, [inst("i0", 3000)], plan.deficits_mcpu)
    assert plan.placements == {("a", 0): "i0"}
    assert "a" not in plan.deficits_mcpu  # no Ready jobs left: the deficit resets
    assert plan.deficits_mcpu["b"] == 1500  # b's jobs found no room: its grant carries over


def test_best_fit_takes_the_tightest_instance() -> None:
    users = {"a": queue(jobs("a", 1500))}
    plan = plan_pass(users, [inst("big", 8000), inst("tight", 2000), inst("mid", 4000)])
    assert plan.placements == {("a", 0): "tight"}


def test_regions_are_respected() -> None:
    eu = frozenset({"eu"})
    users = {"a": queue(jobs("a", 1000, 1000, regions=eu))}
    instances = [inst("us-1", 1500, "us"), inst("eu-1", 1200, "eu"), inst("us-2", 9000, "us")]
    plan = plan_pass(users, instances)
    assert plan.placements == {("a", 0): "eu-1"}
    assert plan.pending == {("a", 1): PendingReason.NO_REGION}


def test_region_without_instances() -> None:
    users = {"a": queue(jobs("a", 1000, regions=frozenset({"mars"})))}
    plan = plan_pass(users, [inst("i0", 4000)])
    assert plan.pending == {("a", 0): PendingReason.NO_REGION}


@pytest.mark.parametrize(
    ("cores", "reason"),
    [(WORKER_MCPU, PendingReason.NO_INSTANCE_FITS), (None, PendingReason.NO_CAPACITY)],
)
def test_job_bigger_than_any_instance(cores: int | None, reason: PendingReason) -> None:
    users = {"a": queue(jobs("a", 32_000, 1000))}
    plan = plan_pass(users, [inst("i0", WORKER_MCPU, cores=cores)])
    assert plan.pending == {("a", 0): reason}
    assert plan.placements == {("a", 1): "i0"}  # the smaller job behind it still runs


def test_no_capacity_and_smaller_jobs_skip_ahead() -> None:
    users = {"a": queue(jobs("a", 3000, 500, 250))}
    plan = plan_pass(users, [inst("i0", 600, cores=None)])
    assert plan.pending == {
        ("a", 0): PendingReason.NO_CAPACITY,
        ("a", 2): PendingReason.NO_CAPACITY,
    }
    assert plan.placements == {("a", 1): "i0"}


def test_unused_share_is_reoffered_in_the_same_pass() -> None:
    eu = frozenset({"eu"})
    users = {"a": queue(jobs("a", *[1000] * 8, regions=eu)), "b": queue(jobs("b", *[1000] * 8))}
    plan = plan_pass(users, [inst("us-1", 8000, "us"), inst("eu-1", 1000, "eu")])
    assert placed_mcpu(plan, "a", users) == 1000
    assert placed_mcpu(plan, "b", users) == 8000  # a's grant in "us" does not sit idle


def test_rounding_leftovers_are_used() -> None:
    users = {u: queue(jobs(u, *[1000] * 8)) for u in "abc"}  # grants of 3333, 3333, 3334
    plan = plan_pass(users, [inst("i0", 10_000)])
    assert sum(placed_mcpu(plan, u, users) for u in users) == 10_000


def test_fragmented_pool_reserves_a_hole_for_a_big_job() -> None:
    users = {"a": queue(jobs("a", 4000)), "b": queue(jobs("b", *[250] * 40), 16_000)}
    instances = [inst("i0", 3000), inst("i1", 2500)]
    plan = plan_pass(users, instances, {"a": 4000})
    assert plan.pending[("a", 0)] is PendingReason.NO_CAPACITY
    assert plan.reservations == {"i0": "a"}
    assert all(name == "i1" for name in plan.placements.values())


def test_empty_inputs() -> None:
    assert plan_pass({}, []) == PassPlan({}, {}, {}, {})
    plan = plan_pass({"a": queue(jobs("a", 1000))}, [])
    assert plan.pending == {("a", 0): PendingReason.NO_CAPACITY}
    plan = plan_pass({"a": queue(jobs("a", 1000))}, [inst("i0", 0)])
    assert plan.pending == {("a", 0): PendingReason.NO_CAPACITY}
    assert plan.deficits_mcpu == {"a": 0}


def test_cut_head() -> None:
    ready = jobs("a", *[1000] * 50)
    assert len(cut_head(ready, 0)) == HEAD_EXTRA_JOBS
    assert len(cut_head(ready, 3000)) == 3 + HEAD_EXTRA_JOBS
    assert len(cut_head(jobs("a", *[1] * 1000), 10**9)) == MAX_HEAD_JOBS
    assert head_budget_mcpu(4000, {"a": (0, 1000), "b": (0, 9000)}, {"b": 500}) == {
        "a": 1000,
        "b": 3500,
    }


def test_place_keeps_its_contract() -> None:
    demands = [Demand("x", 1000), Demand("y", 500, frozenset({"eu"})), Demand("z", 9000)]
    capacities = [Capacity("a", 1200, "us"), Capacity("b", 4000, "us"), Capacity("c", 600, "eu")]
    assert place(demands, capacities) == [("x", "a"), ("y", "c")]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.sampled_from([250, 500, 1000, 2000, 4000]), min_size=2, max_size=4),
    st.lists(st.integers(1, 4), min_size=4, max_size=4),
    st.integers(1, 3),
)
def test_running_cores_converge_to_fair_share(
    sizes: list[int], durations: list[int], n_instances: int
) -> None:
    names = [f"u{i}" for i in range(len(sizes))]
    pool = Pool(
        dict(zip(names, sizes, strict=True)), dict(zip(names, durations, strict=False)), n_instances
    )
    fair = n_instances * WORKER_MCPU / len(sizes)
    for _ in range(40):
        pool.step()
    for _ in range(5):
        pool.step()
        running = pool.running_mcpu()
        assert all(abs(running[u] - fair) <= max(sizes) for u in names), (running, fair)


def test_every_head_job_is_placed_or_has_a_reason() -> None:
    users = {u: queue(jobs(u, *[700, 3000, 250] * 4)) for u in "abcd"}
    plan = plan_pass(users, [inst(f"i{i}", 3000 + 1000 * i) for i in range(3)])
    keys: set[Hashable] = {j.key for q in users.values() for j in q.head}
    assert plan.placements.keys() | plan.pending.keys() == keys
    assert not plan.placements.keys() & plan.pending.keys()
