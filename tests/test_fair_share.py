"""Water-filling fair share: worked examples, the laws it keeps, and a brute-force oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.scheduler.fair_share import allocate

Users = dict[str, tuple[int, int]]

users_st = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=3),
    st.tuples(st.integers(0, 64_000), st.integers(0, 64_000)),
    max_size=12,
)
free_st = st.integers(0, 200_000)
FAST = settings(max_examples=150, deadline=None)


def one_at_a_time(free_mcpu: int, users: Users) -> dict[str, int]:
    """Hand out one millicore at a time to the lowest user with demand left (ties by name)."""
    grants = dict.fromkeys(users, 0)
    for _ in range(free_mcpu):
        open_ = [(r + grants[n], n) for n, (r, d) in users.items() if grants[n] < d]
        if not open_:
            break
        grants[min(open_)[1]] += 1
    return grants


@pytest.mark.parametrize(
    ("free", "users", "expected"),
    [
        (0, {}, {}),
        (1000, {}, {}),
        (0, {"a": (0, 500), "b": (100, 0)}, {"a": 0, "b": 0}),
        (4000, {"a": (0, 10_000)}, {"a": 4000}),
        (4000, {"a": (0, 1500)}, {"a": 1500}),
        (3000, {"a": (0, 9000), "b": (0, 9000), "c": (0, 9000)}, {"a": 1000, "b": 1000, "c": 1000}),
        (1000, {"a": (0, 9000), "b": (0, 9000), "c": (0, 9000)}, {"a": 334, "b": 333, "c": 333}),
        # b already runs above the level reached by a and c: it gets nothing
        (2000, {"a": (0, 5000), "b": (8000, 5000), "c": (0, 5000)}, {"a": 1000, "b": 0, "c": 1000}),
        # a is capped by its demand; the rest goes to b
        (2000, {"a": (0, 250), "b": (0, 8000)}, {"a": 250, "b": 1750}),
        # levels: a rises from 1000 to 2500, b from 2000 to 2500
        (2000, {"a": (1000, 9000), "b": (2000, 9000)}, {"a": 1500, "b": 500}),
        (-5, {"a": (0, 100)}, {"a": 0}),
        (10**15, {"a": (10**12, 10**14), "b": (0, 10**14)}, {"a": 10**14, "b": 10**14}),
        (
            10**14,
            {"a": (10**12, 10**14), "b": (0, 10**14)},
            {"a": (10**14 - 10**12) // 2, "b": (10**14 + 10**12) // 2},
        ),
    ],
)
def test_examples(free: int, users: Users, expected: dict[str, int]) -> None:
    assert allocate(free, users) == expected


@FAST
@given(free_st, users_st)
def test_grants_within_ready_and_free(free: int, users: Users) -> None:
    grants = allocate(free, users)
    assert grants.keys() == users.keys()
    assert all(0 <= grants[n] <= users[n][1] for n in users)
    assert sum(grants.values()) == min(free, sum(d for _, d in users.values()))


@FAST
@given(free_st, users_st)
def test_common_level(free: int, users: Users) -> None:
    grants = allocate(free, users)
    for a, (run_a, _) in users.items():
        for b, (run_b, ready_b) in users.items():
            if grants[a] > 0 and grants[b] < ready_b:
                assert run_a + grants[a] <= run_b + grants[b] + 1


@FAST
@given(free_st, users_st)
def test_users_above_the_level_get_nothing(free: int, users: Users) -> None:
    grants = allocate(free, users)
    granted = [users[n][0] + g for n, g in grants.items() if g > 0]
    if granted:
        floor = min(granted)  # every granted user reaches at least this level, minus rounding
        for n, (running, _) in users.items():
            if running > max(granted):
                assert grants[n] == 0
            if grants[n] == 0 and users[n][1] > 0:
                assert running >= floor - 1


@FAST
@given(free_st, st.integers(1, 20_000), users_st)
def test_more_free_never_lowers_a_grant(free: int, more: int, users: Users) -> None:
    before, after = allocate(free, users), allocate(free + more, users)
    assert all(after[n] >= before[n] for n in users)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 300),
    st.dictionaries(
        st.sampled_from("abcdef"), st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=6
    ),
)
def test_matches_one_millicore_at_a_time(free: int, users: Users) -> None:
    assert allocate(free, users) == one_at_a_time(free, users)


def test_deterministic_whatever_the_insertion_order() -> None:
    users = {f"u{i}": (i * 7 % 5, 1000) for i in range(50)}
    reverse = dict(reversed(list(users.items())))
    assert allocate(777, users) == allocate(777, reverse)
