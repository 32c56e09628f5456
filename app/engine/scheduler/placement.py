"""Best-fit placement of jobs on instances: a pure function over plain data."""

from __future__ import annotations

import bisect
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Demand:
    """A job waiting for cores: its key, size and allowed locations (None: anywhere)."""

    key: Hashable
    cores_mcpu: int
    regions: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Capacity:
    """An instance's free cores, where it runs and (when known) its total cores."""

    name: str
    free_mcpu: int
    location: str = "local"
    cores_mcpu: int | None = None


class FreeCores:
    """Free cores of instances, one sorted (free_mcpu, name) list per location.

    A best-fit lookup costs one bisect per allowed location, so region-constrained jobs never
    walk past instances in other regions.
    """

    __slots__ = ("_free", "_holes", "_where", "locations", "total_mcpu")

    def __init__(self, capacities: Iterable[Capacity] = ()) -> None:
        self._holes: dict[str, list[tuple[int, str]]] = {}
        self._where: dict[str, str] = {}
        self._free: dict[str, int] = {}
        self.locations: set[str] = set()
        self.total_mcpu = 0
        for c in capacities:
            free = max(0, c.free_mcpu)
            self._where[c.name] = c.location
            self._free[c.name] = free
            self.locations.add(c.location)
            self.total_mcpu += free
            if free > 0:
                self._holes.setdefault(c.location, []).append((free, c.name))
        for holes in self._holes.values():
            holes.sort()

    def add(self, name: str, free_mcpu: int, location: str) -> None:
        """Index one more instance."""
        free_mcpu = max(0, free_mcpu)
        self._where[name] = location
        self._free[name] = free_mcpu
        self.locations.add(location)
        self.total_mcpu += free_mcpu
        if free_mcpu > 0:
            bisect.insort(self._holes.setdefault(location, []), (free_mcpu, name))

    def _lists(self, regions: Collection[str] | None) -> Iterable[list[tuple[int, str]]]:
        if regions is None:
            return self._holes.values()
        return [self._holes[r] for r in regions if r in self._holes]

    def place(
        self,
        cores_mcpu: int,
        regions: Collection[str] | None = None,
        *,
        prefer: Mapping[str, int] | None = None,
    ) -> str | None:
        """Best-fit one job and take its cores; None when no allowed instance fits.

        ``prefer`` (instance -> bytes of the job's inputs its cache holds) picks, among the
        instances where the job fits, the one holding the most; best fit breaks ties. It only
        chooses where a job that fair share already granted runs, never whether it runs.
        """
        if prefer:
            name = self._preferred(cores_mcpu, regions, prefer)
            if name is not None:
                self.take(name, cores_mcpu)
                return name
        best: tuple[int, str] | None = None
        where: list[tuple[int, str]] = []
        at = 0
        probe = (cores_mcpu, "")
        lists = self._holes.values() if regions is None else self._lists(regions)
        for holes in lists:
            i = bisect.bisect_left(holes, probe)
            if i < len(holes):
                hole = holes[i]
                if best is None or hole < best:
                    best, where, at = hole, holes, i
        if best is None:
            return None
        free, name = best
        del where[at]
        left = free - cores_mcpu
        self._free[name] = left
        self.total_mcpu -= cores_mcpu
        if left > 0:
            bisect.insort(where, (left, name))
        return name

    def _preferred(
        self, cores_mcpu: int, regions: Collection[str] | None, prefer: Mapping[str, int]
    ) -> str | None:
        fits = [
            (-held, self._free[name], name)
            for name, held in prefer.items()
            if held > 0
            and self._free.get(name, 0) >= cores_mcpu
            and (regions is None or self._where[name] in regions)
        ]
        return min(fits)[2] if fits else None

    def largest(self, regions: Collection[str] | None = None) -> tuple[int, str] | None:
        """The (free_mcpu, name) of the biggest hole in the allowed locations."""
        tops = [holes[-1] for holes in self._lists(regions) if holes]
        return max(tops) if tops else None

    def take(self, name: str, cores_mcpu: int) -> None:
        """Use cores of an instance (its free cores must cover them)."""
        free = self._free[name]
        holes = self._holes[self._where[name]]
        del holes[bisect.bisect_left(holes, (free, name))]
        left = free - cores_mcpu
        self._free[name] = left
        self.total_mcpu -= cores_mcpu
        if left > 0:
            bisect.insort(holes, (left, name))

    def withdraw(self, name: str) -> None:
        """Hide an instance's free cores from later lookups (a reservation)."""
        free = self._free[name]
        if free > 0:
            self.take(name, free)


def held_input_bytes(
    inputs: Collection[str], cached: Mapping[str, Mapping[str, int]]
) -> dict[str, int]:
    """Instance -> bytes of a job's ``inputs`` (locations) that its worker's cache holds
    (``cached``: instance -> location -> size); instances holding none are left out."""
    held: dict[str, int] = {}
    for name, sizes in cached.items():
        total = sum(sizes.get(location, 0) for location in inputs)
        if total > 0:
            held[name] = total
    return held


def place(demands: Sequence[Demand], capacities: Sequence[Capacity]) -> list[tuple[Hashable, str]]:
    """Place demands in order on the instance with the least free cores that fits (best fit).

    A demand that fits nowhere is skipped; later, smaller ones may still fit.
    """
    index = FreeCores(capacities)
    placed: list[tuple[Hashable, str]] = []
    for demand in demands:
        name = index.place(demand.cores_mcpu, demand.regions)
        if name is not None:
            placed.append((demand.key, name))
    return placed
