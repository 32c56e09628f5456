"""Placement prefers the worker whose cache holds most of a job's inputs, among those it fits."""

from __future__ import annotations

import pytest

from app.engine.scheduler.input_cache import input_locations
from app.engine.scheduler.placement import Capacity, FreeCores, held_input_bytes
from app.engine.scheduler.scheduling import QueuedJob, UserQueue, plan_pass

# three workers: a (1 core free), b (4 free), c (8 free, another region)
WORKERS = [Capacity("a", 1000, "us"), Capacity("b", 4000, "us"), Capacity("c", 8000, "eu")]


@pytest.mark.parametrize(
    ("cores", "regions", "prefer", "expected"),
    [
        (1000, None, None, "a"),  # best fit without a preference
        (1000, None, {"b": 200}, "b"),  # the cache holder, although a fits tighter
        (1000, None, {"b": 200, "c": 300}, "c"),  # the one holding most
        (1000, None, {"b": 300, "c": 300}, "b"),  # equal holdings: best fit
        (2000, None, {"a": 900}, "b"),  # the holder is too full: best fit elsewhere
        (1000, {"us"}, {"c": 900}, "a"),  # the holder is in a region the job may not use
        (1000, None, {"gone": 900}, "a"),  # an instance that is not there any more
        (1000, None, {"b": 0}, "a"),  # holding nothing is no preference
        (9000, None, {"c": 900}, None),  # fits nowhere
    ],
)
def test_preference_among_instances_that_fit(
    cores: int, regions: set[str] | None, prefer: dict[str, int] | None, expected: str | None
) -> None:
    index = FreeCores(WORKERS)
    assert index.place(cores, regions, prefer=prefer) == expected


def test_a_preferred_placement_takes_the_cores() -> None:
    index = FreeCores(WORKERS)
    assert index.place(3000, prefer={"b": 1}) == "b"
    assert index.place(2000, prefer={"b": 1}) == "c"  # b has 1 core left now
    assert index.total_mcpu == 13000 - 5000


def test_held_input_bytes() -> None:
    inputs = ["gs://b/ref", "gs://b/idx"]
    cached = {"vm1": {"gs://b/ref": 3000}, "vm2": {"gs://b/idx": 10, "gs://b/x": 5}, "vm3": {}}
    assert held_input_bytes(inputs, cached) == {"vm1": 3000, "vm2": 10}


def test_a_scheduling_pass_sends_a_job_to_its_inputs_within_fair_share() -> None:
    jobs = [
        QueuedJob(("b", 1), 1000, prefer={"b": 200}),
        QueuedJob(("b", 2), 1000),
    ]
    other = [QueuedJob(("o", 1), 1000, prefer={"b": 200}), QueuedJob(("o", 2), 1000)]
    queues = {"ann": UserQueue(0, 2000, jobs), "bob": UserQueue(0, 2000, other)}
    plan = plan_pass(queues, [Capacity("a", 1000), Capacity("b", 1000)], {})
    # two free cores, two users: one job each (fair share), each on the worker holding its input
    # where that one is free; the preference never gives a user a second job
    assert sorted(plan.placements.values()) == ["a", "b"]
    assert {k[0] for k in plan.placements} == {"b", "o"}


@pytest.mark.parametrize(
    ("entry", "scratch", "expected"),
    [
        ({"url": "gs://bkt/ref.fa"}, None, ["gs://bkt/ref.fa"]),
        ({"url": "az://acct/cont/x.bam"}, None, ["https://acct.blob.core.windows.net/cont/x.bam"]),
        ({"url": "/data/local.txt"}, None, []),
        ({"job": 3, "key": "kmers.tsv"}, "gs://scr/lab/", ["gs://scr/lab/7/3/kmers.tsv"]),
        ({"job": 3, "key": "kmers.tsv"}, None, []),
    ],
)
def test_input_locations(
    entry: dict[str, object], scratch: str | None, expected: list[str]
) -> None:
    assert input_locations({"in": [entry]}, 7, scratch) == expected


def test_a_preference_never_costs_another_users_job_its_only_place() -> None:
    # x has one core free, y two; ann's two-core job fits only on y, and tester's reader
    # (holding one core already) prefers y, where its input is cached: both run, ann's on y
    for first in ("tester", "ann"):
        queues = {
            "tester": UserQueue(1000, 2000, [QueuedJob(("t", 1), 1000, prefer={"y": 100})]),
            "ann": UserQueue(0, 2000, [QueuedJob(("a", 1), 2000)]),
        }
        if first == "ann":
            queues = dict(reversed(list(queues.items())))
        plan = plan_pass(queues, [Capacity("x", 1000), Capacity("y", 2000)], {})
        assert plan.placements == {("a", 1): "y", ("t", 1): "x"}
