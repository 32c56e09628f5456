"""Fair share of free cores among users by water-filling: a pure function over plain data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def allocate(free_mcpu: int, users: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """Grant free cores so each user's running + granted cores rise to one common level.

    `users` maps a name to (running_mcpu, ready_mcpu). No user is granted more than its ready
    cores; users already above the level get 0. All of `free_mcpu` is granted unless the ready
    demand is smaller: the millicores left after flooring the level go, one each, to the users at
    the level in name order. The result is exactly what handing out one millicore at a time to the
    lowest user (ties by name) would give, in O(U log U).
    """
    budget = max(0, free_mcpu)
    grants = dict.fromkeys(users, 0)
    wanting = [
        (name, max(0, running), ready) for name, (running, ready) in users.items() if ready > 0
    ]
    if sum(ready for _, _, ready in wanting) <= budget:
        grants.update((name, ready) for name, _, ready in wanting)
        return grants
    level = water_level_mcpu(budget, [(running, ready) for _, running, ready in wanting])
    at_level = []  # users whose level is exactly `level` and who could take one millicore more
    for name, running, ready in wanting:
        grant = level - running
        if grant < 0:
            continue
        if grant >= ready:
            grant = ready
        else:
            at_level.append(name)
        grants[name] = grant
        budget -= grant
    at_level.sort()
    for name in at_level[:budget]:
        grants[name] += 1
    return grants


def water_level_mcpu(budget_mcpu: int, demands: Sequence[tuple[int, int]]) -> int:
    """The highest level L with sum(clamp(L - running, 0, ready)) <= budget_mcpu."""
    if not demands:
        return 0
    starts = sorted(running for running, _ in demands)
    ends = sorted(running + ready for running, ready in demands)
    n = len(starts)
    level, slope, i, j = starts[0], 0, 0, 0
    while True:
        while i < n and starts[i] <= level:
            slope, i = slope + 1, i + 1
        while j < n and ends[j] <= level:
            slope, j = slope - 1, j + 1
        if j == n:  # everyone is full: the budget covers all demand
            return level
        step = (starts[i] if i < n and starts[i] < ends[j] else ends[j]) - level
        if slope * step > budget_mcpu:
            return level + budget_mcpu // slope
        budget_mcpu -= slope * step
        level += step
