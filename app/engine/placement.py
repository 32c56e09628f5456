"""Best-fit placement of jobs on instances: a pure function over plain data."""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Demand:
    """A job waiting for cores: its key, size and allowed locations (None: anywhere)."""

    key: Hashable
    cores_mcpu: int
    regions: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Capacity:
    """An instance's free cores and where it runs."""

    name: str
    free_mcpu: int
    location: str = "local"


def place(demands: Sequence[Demand], capacities: Sequence[Capacity]) -> list[tuple[Hashable, str]]:
    """Place demands in order on the instance with the least free cores that fits (best fit).

    A demand that fits nowhere is skipped; later, smaller ones may still fit.
    """
    holes = sorted((c.free_mcpu, c.name) for c in capacities if c.free_mcpu > 0)
    where = {c.name: c.location for c in capacities}
    placed: list[tuple[Hashable, str]] = []
    for demand in demands:
        i = bisect.bisect_left(holes, (demand.cores_mcpu, ""))
        while i < len(holes):
            free, name = holes[i]
            if demand.regions is None or where[name] in demand.regions:
                break
            i += 1
        else:
            continue
        del holes[i]
        placed.append((demand.key, name))
        left = free - demand.cores_mcpu
        if left > 0:
            bisect.insort(holes, (left, name))
    return placed
