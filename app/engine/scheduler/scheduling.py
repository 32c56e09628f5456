"""One scheduling pass in memory: fair share, deficit round robin and best-fit placement.

The caller loads, per user, its running cores, its total Ready cores and the head of its Ready
queue in priority order (oldest batch first, always_run jobs first, then job id); `plan_pass`
decides which of those jobs go where; the caller applies the result and keeps `deficits_mcpu`
for the next pass.

How much of each queue to pass: `head_budget_mcpu` gives, per user, the cores its first round
can place at most (carried deficit + grant); `cut_head` takes jobs in order until their cores reach
that budget, then HEAD_EXTRA_JOBS more (to skip jobs that fit nowhere and to use cores re-offered
in later rounds), never more than MAX_HEAD_JOBS. A user's jobs beyond its head wait for the next
pass; deficits carry at most max(grant, the size of the user's next job).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from app.engine.scheduler.fair_share import allocate
from app.engine.scheduler.placement import Capacity, FreeCores

HEAD_EXTRA_JOBS = 4
MAX_HEAD_JOBS = 300
REOFFER_ROUNDS = 3
_NEVER = 1 << 62


class PendingReason(StrEnum):
    """Why a Ready job at the head of its user's queue was not placed this pass."""

    WAITING_FOR_SHARE = "waiting_for_share"  # its user reached its fair share this pass
    NO_CAPACITY = "no_capacity"  # no healthy instance has room for it now
    NO_REGION = "no_region"  # room exists, but not in its regions (or no instance there)
    NO_INSTANCE_FITS = "no_instance_fits"  # bigger than every healthy instance


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A Ready job: its key, size and allowed regions (None: any)."""

    key: Hashable
    cores_mcpu: int
    regions: frozenset[str] | None = None
    # instance -> bytes of the job's inputs its cache holds: where it fits, it goes there
    prefer: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class UserQueue:
    """A user's running cores, total Ready cores and the head of its Ready queue, in order."""

    running_mcpu: int
    ready_mcpu: int
    head: Sequence[QueuedJob] = ()


@dataclass(frozen=True, slots=True)
class PassPlan:
    """What one pass decided: placements, grants, deficits to carry and why jobs wait."""

    placements: dict[Hashable, str]
    grants_mcpu: dict[str, int]
    deficits_mcpu: dict[str, int]
    pending: dict[Hashable, PendingReason]
    reservations: dict[str, str] = field(default_factory=dict)  # instance name -> user


@dataclass(slots=True)
class _Cursor:
    """A user's progress through its head during one pass."""

    name: str
    head: Sequence[QueuedJob]
    level_mcpu: int
    ready_mcpu: int
    deficit_mcpu: int
    pos: int = 0
    placed_mcpu: int = 0
    reserved: bool = False


def head_budget_mcpu(
    free_mcpu: int, users: Mapping[str, tuple[int, int]], deficits_mcpu: Mapping[str, int]
) -> dict[str, int]:
    """Cores of Ready jobs to load per user: its deficit plus its grant, at most its Ready cores."""
    grants = allocate(free_mcpu, users)
    return {
        name: min(ready, deficits_mcpu.get(name, 0) + grants[name])
        for name, (_, ready) in users.items()
    }


def cut_head(jobs: Iterable[QueuedJob], budget_mcpu: int) -> list[QueuedJob]:
    """The jobs to pass for one user: in order until budget_mcpu, then HEAD_EXTRA_JOBS more."""
    head: list[QueuedJob] = []
    total, extra = 0, 0
    for job in jobs:
        if len(head) == MAX_HEAD_JOBS or extra == HEAD_EXTRA_JOBS:
            break
        if total >= budget_mcpu:
            extra += 1
        head.append(job)
        total += job.cores_mcpu
    return head


def plan_pass(
    users: Mapping[str, UserQueue],
    instances: Sequence[Capacity],
    deficits_mcpu: Mapping[str, int] | None = None,
) -> PassPlan:
    """Plan one pass: fair share, deficit round robin per user, best fit, then re-offer leftovers.

    Round 1 visits users from the lowest running cores up; each places its jobs in order while a
    job's cores fit in its deficit (carried deficit + this pass's grant). A job that cannot fit
    anywhere is skipped; if it is within the deficit and blocked only by fragmentation, the
    biggest hole in its regions is reserved for it (kept empty for the rest of the pass, so it
    drains) and its user stops. Later rounds re-offer the cores still free by water-filling among
    the users with untried jobs, each placing while its share of them is positive.
    """
    state = _Pass(instances)
    demand = {n: (q.running_mcpu, q.ready_mcpu) for n, q in users.items()}
    grants = allocate(state.index.total_mcpu, demand)
    state.plan = plan = PassPlan({}, grants, {}, {})
    carried = deficits_mcpu or {}
    cursors = []
    for name, queue in users.items():
        if queue.head:
            # the carry only lets a user reach a next job bigger than its grant, never burst
            reach = max(grants[name], queue.head[0].cores_mcpu)
            deficit = min(max(0, carried.get(name, 0)) + grants[name], reach)
            cursors.append(_Cursor(name, queue.head, queue.running_mcpu, queue.ready_mcpu, deficit))
    # lowest first; at equal levels, whoever has waited longest (the bigger deficit)
    cursors.sort(key=lambda c: (c.level_mcpu, -c.deficit_mcpu, c.name))
    for cur in cursors:
        cur.deficit_mcpu -= state.serve(cur, cur.deficit_mcpu, strict=True)
    state.reoffer(cursors)
    for cur in cursors:
        for job in cur.head[cur.pos :]:
            plan.pending[job.key] = state.untried_reason(job)
        if cur.ready_mcpu > cur.placed_mcpu:
            plan.deficits_mcpu[cur.name] = cur.deficit_mcpu
    return plan


class _Pass:
    """The mutable state of one pass: free cores, the plan so far, reservations left."""

    def __init__(self, instances: Sequence[Capacity]) -> None:
        self.index = FreeCores(instances)
        self.plan = PassPlan({}, {}, {}, {})
        sizes = [c.cores_mcpu for c in instances]
        # None when any size is unknown: then no job is known too big and nothing is reserved
        self.sizes: dict[str, int] | None = None
        self.largest_worker_mcpu: int | None = None
        if sizes and all(s is not None for s in sizes):
            self.sizes = {c.name: c.cores_mcpu or 0 for c in instances}
            self.largest_worker_mcpu = max(self.sizes.values())
        self.max_worker_mcpu = self.largest_worker_mcpu or _NEVER
        self.reservations_left = max(1, min(8, len(instances) // 8))
        self.tops: dict[str, int] = {}  # the biggest hole per location at the start
        for c in instances:
            self.tops[c.location] = max(self.tops.get(c.location, 0), c.free_mcpu)
        self.top_mcpu = max(self.tops.values(), default=0)
        self.failed_mcpu: dict[frozenset[str] | None, int] = {}  # smallest size that fit nowhere

    def reoffer(self, cursors: list[_Cursor]) -> None:
        """Offer the cores left free to users with untried jobs, water-filling on their levels.

        Repeated while jobs get tried (at most REOFFER_ROUNDS times): a user whose jobs fit
        nowhere leaves its share to the next round instead of keeping cores idle.
        """
        for _ in range(REOFFER_ROUNDS):
            waiting = [c for c in cursors if c.pos < len(c.head) and not c.reserved]
            if self.index.total_mcpu <= 0 or not waiting:
                return
            shares = allocate(
                self.index.total_mcpu,
                {c.name: (c.level_mcpu, c.ready_mcpu - c.placed_mcpu) for c in waiting},
            )
            waiting.sort(key=lambda c: (c.level_mcpu, c.name))
            tried = sum(c.pos for c in waiting)
            for cur in waiting:
                if shares[cur.name] > 0:
                    used = self.serve(cur, shares[cur.name], strict=False)
                    cur.deficit_mcpu = max(0, cur.deficit_mcpu - used)
            if sum(c.pos for c in waiting) == tried:
                return

    def serve(self, cur: _Cursor, budget_mcpu: int, *, strict: bool) -> int:
        """Place cur's jobs in order within budget_mcpu; return the cores placed.

        strict: a job must fit in what is left of the budget (round 1); otherwise a positive rest
        suffices, so the last job may overshoot (re-offers: rounding must not leave cores idle).
        """
        used, head, failed, place = 0, cur.head, self.failed_mcpu, self.index.place
        placements, pending = self.plan.placements, self.plan.pending
        max_worker, pos, end = self.max_worker_mcpu, cur.pos, len(cur.head)
        while pos < end:
            job = head[pos]
            cores, regions = job.cores_mcpu, job.regions
            if regions is not None or cores > max_worker:
                reason = self.never_fits(job)
                if reason is not None:
                    pending[job.key] = reason
                    pos += 1
                    continue
            left = budget_mcpu - used
            if (cores > left) if strict else (left <= 0):
                break
            pos += 1
            if cores < failed.get(regions, _NEVER):
                name = place(cores, regions, prefer=job.prefer)
                if name is not None:
                    placements[job.key] = name
                    used += cores
                    continue
                # holes only shrink during a pass: no later job this big will fit either
                failed[regions] = cores
            if strict or regions is not None:
                pending[job.key] = self.no_room(cur, job, strict=strict)
                if cur.reserved:
                    break
            else:
                pending[job.key] = PendingReason.NO_CAPACITY
        cur.pos = pos
        cur.level_mcpu += used
        cur.placed_mcpu += used
        return used

    def no_room(self, cur: _Cursor, job: QueuedJob, *, strict: bool) -> PendingReason:
        """Why a job fits no hole; in round 1, reserve one for it if it may drain to fit."""
        if strict:
            self.reserve(cur, job)
        if job.regions is None:
            return PendingReason.NO_CAPACITY
        anywhere = self.index.largest()
        if anywhere is not None and anywhere[0] >= job.cores_mcpu:
            return PendingReason.NO_REGION
        return PendingReason.NO_CAPACITY

    def untried_reason(self, job: QueuedJob) -> PendingReason:
        """Why a job its user's share held back waits: the share, or no room at the start."""
        if job.cores_mcpu <= self.start_top_mcpu(job.regions):
            return PendingReason.WAITING_FOR_SHARE
        if job.regions is not None and job.cores_mcpu <= self.start_top_mcpu(None):
            return PendingReason.NO_REGION
        return PendingReason.NO_CAPACITY

    def start_top_mcpu(self, regions: frozenset[str] | None) -> int:
        """The biggest hole in the regions when the pass began."""
        if regions is None:
            return self.top_mcpu
        return max((self.tops.get(r, 0) for r in regions), default=0)

    def never_fits(self, job: QueuedJob) -> PendingReason | None:
        """Why no current instance could take the job whatever frees up, if so."""
        if self.largest_worker_mcpu is not None and job.cores_mcpu > self.largest_worker_mcpu:
            return PendingReason.NO_INSTANCE_FITS
        if job.regions is not None and job.regions.isdisjoint(self.index.locations):
            return PendingReason.NO_REGION
        return None

    def reserve(self, cur: _Cursor, job: QueuedJob) -> None:
        """Keep the biggest hole in the job's regions empty this pass so that it drains to fit."""
        if self.sizes is None or self.reservations_left <= 0:
            return
        top = self.index.largest(job.regions)
        if top is None or self.sizes[top[1]] < job.cores_mcpu:
            return
        self.index.withdraw(top[1])
        self.plan.reservations[top[1]] = cur.name
        self.reservations_left -= 1
        cur.reserved = True
