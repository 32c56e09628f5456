"""Placement prefers the worker whose cache holds most of a job's inputs, among those it fits."""

from __future__ import annotations

import pytest

from app.engine.scheduler.placement import Capacity, FreeCores, held_input_bytes

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
    inputs = {"gs://b/ref#1": 3000, "gs://b/idx#4": 10}
    cached = {"vm1": {"gs://b/ref#1"}, "vm2": {"gs://b/ref#0", "gs://b/idx#4"}, "vm3": set()}
    assert held_input_bytes(inputs, cached) == {"vm1": 3000, "vm2": 10}
