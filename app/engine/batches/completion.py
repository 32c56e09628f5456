"""Ending jobs inside one transaction: states, children's counts, batch counters, cancellation.

Everything here runs on a connection that is already inside a transaction, so a burst of
completions (or a whole cancel) is one commit, and a child's ``n_pending_parents`` always drops
in the same transaction as its parent ends (Hail's semantics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Boolean, and_, bindparam, case, false, func, or_, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import BindParameter

from app.engine.batches.dag import batch_state
from app.models.prepared import Prepared
from app.models.tables import (
    COMPLETE_STATES,
    Batch,
    Job,
    JobParent,
    JobState,
    attempts_table,
    batches_table,
    jobs_table,
)

T = TypeVar("T")
CHUNK = 2000
_jobs = jobs_table
_batches = batches_table
_attempts = attempts_table


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Slices of at most ``size`` items (keeps IN lists under the drivers' limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class JobEnd:
    """A job that reached a final state."""

    batch_id: int
    job_id: int
    state: JobState
    time_ended: float
    exit_code: int | None = None
    error: str | None = None


@dataclass(slots=True)
class Changes:
    """What one transaction changed, for events and the driver's loops."""

    batches: set[int] = field(default_factory=set)
    n_jobs_changed: int = 0
    n_ready: int = 0
    cancelled_batches: set[int] = field(default_factory=set)
    completed_batches: set[int] = field(default_factory=set)

    def merge(self, other: Changes) -> None:
        self.batches |= other.batches
        self.n_jobs_changed += other.n_jobs_changed
        self.n_ready += other.n_ready
        self.cancelled_batches |= other.cancelled_batches
        self.completed_batches |= other.completed_batches


@dataclass(slots=True)
class _Counts:
    completed: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    def add(self, state: str, n: int = 1) -> None:
        self.completed += n
        if state == JobState.SUCCESS:
            self.succeeded += n
        elif state == JobState.CANCELLED:
            self.cancelled += n
        else:
            self.failed += n


_set_final = Prepared(
    update(_jobs)
    .where(
        _jobs.c.batch_id == bindparam("b_batch_id"),
        _jobs.c.job_id == bindparam("b_job_id"),
    )
    .values(
        state=bindparam("b_state"),
        exit_code=bindparam("b_exit_code"),
        error=bindparam("b_error"),
        time_ended=bindparam("b_time_ended"),
    )
)

_B: BindParameter[int] = bindparam("b_batch_id")
_J: BindParameter[int] = bindparam("b_job_id")
_IDS: BindParameter[list[int]] = bindparam("b_ids", expanding=True)
_FAILED = bindparam("b_failed", type_=Boolean)
_LEFT = _jobs.c.n_pending_parents - bindparam("b_k")
_RELEASED = and_(_jobs.c.state == str(JobState.PENDING), _LEFT == 0)
_OPEN = _jobs.c.state.not_in([str(s) for s in COMPLETE_STATES])

# A child's count drops; when it reaches 0 the child becomes Ready in the same statement,
# unless a parent did not succeed (then it is doomed, below) and it is not always_run.
# Only a Pending child moves: one that a cancel already ended stays ended (and counted once).
_drop_pending = Prepared(
    update(_jobs)
    .where(_jobs.c.batch_id == _B, _jobs.c.job_id == _J)
    .values(
        n_pending_parents=_LEFT,
        cancelled=case((_FAILED, true()), else_=_jobs.c.cancelled),
        state=case(
            (
                and_(
                    _RELEASED,
                    or_(_jobs.c.always_run, and_(~_FAILED, _jobs.c.cancelled == false())),
                ),
                str(JobState.READY),
            ),
            else_=_jobs.c.state,
        ),
        time_ready=case((_RELEASED, bindparam("b_now")), else_=_jobs.c.time_ready),
    )
)
# Of the jobs about to end, those not ended yet (a front end's cancel may have ended some);
# the row locks (PostgreSQL) keep a concurrent cancel from ending them twice.
_still_open = Prepared(
    select(Job.job_id).where(Job.batch_id == _B, Job.job_id.in_(_IDS), _OPEN).with_for_update()
)
_children_of = Prepared(
    select(JobParent.job_id, JobParent.parent_id).where(
        JobParent.batch_id == _B, JobParent.parent_id.in_(_IDS)
    )
)
# children released with a parent that did not succeed: they end without running
_doomed = Prepared(
    select(Job.job_id).where(
        Job.batch_id == _B,
        Job.job_id.in_(_IDS),
        Job.n_pending_parents == 0,
        Job.state == str(JobState.PENDING),
    )
)
_cancel_now = (
    update(_jobs)
    .where(_jobs.c.batch_id == _B, _jobs.c.job_id.in_(_IDS), _jobs.c.state == JobState.PENDING)
    .values(state=str(JobState.CANCELLED), time_ended=bindparam("b_now"))
)
_add_counts = Prepared(
    update(_batches)
    .where(_batches.c.id == _B)
    .values(
        n_completed=_batches.c.n_completed + bindparam("b_completed"),
        n_succeeded=_batches.c.n_succeeded + bindparam("b_succeeded"),
        n_failed=_batches.c.n_failed + bindparam("b_failed_n"),
        n_cancelled=_batches.c.n_cancelled + bindparam("b_cancelled"),
    )
    .returning(
        _batches.c.n_jobs,
        _batches.c.n_completed,
        _batches.c.n_failed,
        _batches.c.n_cancelled,
        _batches.c.cancelled,
        _batches.c.cancel_after_n_failures,
        _batches.c.complete,
    )
)
_settle_row = select(
    Batch.n_jobs,
    Batch.n_completed,
    Batch.n_failed,
    Batch.n_cancelled,
    Batch.cancelled,
    Batch.cancel_after_n_failures,
    Batch.complete,
).where(Batch.id == _B)


def end_jobs(conn: Connection, ends: Sequence[JobEnd], now: float) -> Changes:
    """Put jobs in their final state and carry the consequences through the batch."""
    changes = Changes()
    ends = _open_ends(conn, ends)
    if not ends:
        return changes
    _set_final.executemany(
        conn,
        [
            {
                "b_batch_id": e.batch_id,
                "b_job_id": e.job_id,
                "b_state": str(e.state),
                "b_exit_code": e.exit_code,
                "b_error": e.error,
                "b_time_ended": e.time_ended,
            }
            for e in ends
        ],
    )
    counts: dict[int, _Counts] = defaultdict(_Counts)
    for e in ends:
        counts[e.batch_id].add(e.state)
    changes.n_jobs_changed += len(ends)
    frontier = [(e.batch_id, e.job_id, e.state == JobState.SUCCESS) for e in ends]
    _propagate(conn, frontier, now, counts, changes)
    _apply_counts(conn, counts, now, changes)
    return changes


def _open_ends(conn: Connection, ends: Sequence[JobEnd]) -> list[JobEnd]:
    """The ends of jobs that are not in a final state yet, one per job.

    A job ends once: a second end (a cancel that got there first, a late report) would count
    it twice in the batch's counters and release its children twice.
    """
    by_key = {(e.batch_id, e.job_id): e for e in ends}
    open_keys: set[tuple[int, int]] = set()
    for batch_id, job_ids in _by_batch(sorted(by_key)).items():
        for part in chunks(job_ids):
            rows = _still_open.execute(conn, {"b_batch_id": batch_id, "b_ids": list(part)})
            open_keys.update((batch_id, job_id) for (job_id,) in rows)
    return [e for key, e in by_key.items() if key in open_keys]


def _propagate(
    conn: Connection,
    frontier: list[tuple[int, int, bool]],
    now: float,
    counts: dict[int, _Counts],
    changes: Changes,
) -> None:
    """Decrement children's pending-parent counts; cascade cancellation without running."""
    while frontier:
        decrements = _child_decrements(conn, frontier)
        if not decrements:
            return
        _drop_pending.executemany(
            conn,
            [
                {"b_batch_id": b, "b_job_id": j, "b_k": k, "b_failed": failed, "b_now": now}
                for (b, j), (k, failed) in decrements.items()
            ],
        )
        changes.n_jobs_changed += len(decrements)
        changes.n_ready += len(decrements)  # at most: those whose count reached 0
        frontier = []
        for batch_id, children in _by_batch(decrements).items():
            doomed = [
                job_id
                for part in chunks(children)
                for (job_id,) in _doomed.execute(
                    conn, {"b_batch_id": batch_id, "b_ids": list(part)}
                )
            ]
            for part in chunks(doomed):
                conn.execute(_cancel_now, {"b_batch_id": batch_id, "b_ids": part, "b_now": now})
            if doomed:
                counts[batch_id].add(JobState.CANCELLED, len(doomed))
                frontier.extend((batch_id, j, False) for j in doomed)


def _child_decrements(
    conn: Connection, ended: list[tuple[int, int, bool]]
) -> dict[tuple[int, int], tuple[int, bool]]:
    """For each child of the ended jobs: (how many parents ended, whether one did not succeed)."""
    succeeded: dict[tuple[int, int], bool] = {(b, j): ok for b, j, ok in ended}
    parents_by_batch: dict[int, list[int]] = defaultdict(list)
    for b, j, _ok in ended:
        parents_by_batch[b].append(j)
    result: dict[tuple[int, int], tuple[int, bool]] = {}
    for batch_id, parent_ids in parents_by_batch.items():
        for part in chunks(parent_ids):
            rows = _children_of.execute(conn, {"b_batch_id": batch_id, "b_ids": list(part)})
            for child, parent in rows:
                k, failed = result.get((batch_id, child), (0, False))
                result[(batch_id, child)] = (k + 1, failed or not succeeded[(batch_id, parent)])
    return result


def _by_batch(keys: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = defaultdict(list)
    for b, j in keys:
        grouped[b].append(j)
    return grouped


def _apply_counts(
    conn: Connection, counts: dict[int, _Counts], now: float, changes: Changes
) -> None:
    """Add the per-batch deltas, then cancel or complete the batches that crossed a line."""
    for batch_id, c in sorted(counts.items()):
        (row,) = _add_counts.execute(
            conn,
            {
                "b_batch_id": batch_id,
                "b_completed": c.completed,
                "b_succeeded": c.succeeded,
                "b_failed_n": c.failed,
                "b_cancelled": c.cancelled,
            },
        )
        changes.batches.add(batch_id)
        _settle(conn, batch_id, row, now, changes)


def settle_batch(conn: Connection, batch_id: int, now: float, changes: Changes) -> None:
    """Apply cancel_after_n_failures, then mark the batch complete if every job is."""
    _settle(conn, batch_id, conn.execute(_settle_row, {"b_batch_id": batch_id}).one(), now, changes)


def _settle(conn: Connection, batch_id: int, row: Any, now: float, changes: Changes) -> None:
    limit = row.cancel_after_n_failures
    if not row.cancelled and limit is not None and row.n_failed >= limit:
        cancel_batch_jobs(conn, batch_id, now, changes)
        return
    done = row.n_completed >= row.n_jobs
    if done == row.complete:
        return
    state = batch_state(
        complete=done, cancelled=row.cancelled, n_failed=row.n_failed, n_cancelled=row.n_cancelled
    )
    conn.execute(
        update(_batches)
        .where(_batches.c.id == batch_id)
        .values(complete=done, state=str(state), time_completed=now if done else None)
    )
    changes.batches.add(batch_id)
    if done:
        changes.completed_batches.add(batch_id)


def cancel_batch_jobs(conn: Connection, batch_id: int, now: float, changes: Changes) -> None:
    """Cancel a batch: Pending and Ready jobs end at once; always_run jobs still run.

    Running jobs are left to the driver's canceller, which kills them on their workers.
    """
    conn.execute(update(_batches).where(_batches.c.id == batch_id).values(cancelled=True))
    changes.cancelled_batches.add(batch_id)
    changes.batches.add(batch_id)
    result = conn.execute(
        update(_jobs)
        .where(
            _jobs.c.batch_id == batch_id,
            _jobs.c.state.in_([JobState.PENDING, JobState.READY, JobState.CREATING]),
            _jobs.c.always_run == false(),
        )
        .values(state=str(JobState.CANCELLED), time_ended=now)
    )
    n_cancelled = result.rowcount or 0
    _recount_pending(conn, batch_id, now, changes)
    if n_cancelled:
        changes.n_jobs_changed += n_cancelled
        counts = {batch_id: _Counts()}
        counts[batch_id].add(JobState.CANCELLED, n_cancelled)
        _apply_counts(conn, counts, now, changes)
    else:
        settle_batch(conn, batch_id, now, changes)


def _recount_pending(conn: Connection, batch_id: int, now: float, changes: Changes) -> None:
    """Recount the unfinished parents of the always_run jobs still Pending after a cancel."""
    parent = jobs_table.alias("parent")
    unfinished = (
        select(func.count())
        .select_from(JobParent)
        .join(
            parent,
            and_(parent.c.batch_id == JobParent.batch_id, parent.c.job_id == JobParent.parent_id),
        )
        .where(
            JobParent.batch_id == _jobs.c.batch_id,
            JobParent.job_id == _jobs.c.job_id,
            parent.c.state.not_in([str(s) for s in COMPLETE_STATES]),
        )
        .scalar_subquery()
    )
    conn.execute(
        update(_jobs)
        .where(_jobs.c.batch_id == batch_id, _jobs.c.state == JobState.PENDING)
        .values(n_pending_parents=unfinished, cancelled=True)
    )
    result = conn.execute(
        update(_jobs)
        .where(
            _jobs.c.batch_id == batch_id,
            _jobs.c.state == JobState.PENDING,
            _jobs.c.n_pending_parents == 0,
        )
        .values(state=str(JobState.READY), time_ready=now)
    )
    changes.n_ready += result.rowcount or 0


def end_attempts(
    conn: Connection, refs: Iterable[tuple[int, int, int]], *, reason: str, end_time: float
) -> None:
    """Close open attempts with a reason (completed, cancelled, lost, …)."""
    rows = [{"b_b": b, "b_j": j, "b_a": a, "b_r": reason, "b_t": end_time} for b, j, a in refs]
    if not rows:
        return
    conn.execute(
        update(_attempts)
        .where(
            _attempts.c.batch_id == bindparam("b_b"),
            _attempts.c.job_id == bindparam("b_j"),
            _attempts.c.attempt == bindparam("b_a"),
            _attempts.c.end_time.is_(None),
        )
        .values(end_time=bindparam("b_t"), end_reason=bindparam("b_r")),
        rows,
    )
