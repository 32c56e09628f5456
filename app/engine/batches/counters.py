"""A batch's counters are what its jobs table says: the check the driver runs when it starts.

The counters (``n_jobs``, ``n_completed``, ``n_succeeded``, ``n_failed``, ``n_cancelled``) are
kept up to date by increments in the same transactions that end jobs, so that reading a batch
costs one row. If a bug ever let them drift, the driver's start finds it with one grouped
count over the jobs table (an index-only scan), rewrites the drifted rows and logs each one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Boolean, bindparam, case, func, select, update
from sqlalchemy.engine import Connection

from app.engine.batches.dag import batch_state
from app.models.tables import Batch, BatchState, Job, JobState, batches_table

log = logging.getLogger("labbatch.counters")


@dataclass(frozen=True, slots=True)
class BatchCounters:
    """A batch's job counters."""

    n_jobs: int = 0
    n_completed: int = 0
    n_succeeded: int = 0
    n_failed: int = 0
    n_cancelled: int = 0


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """What the batches table holds for one batch: counters and the flags that follow them."""

    counters: BatchCounters
    complete: bool
    cancelled: bool
    state: str


@dataclass(frozen=True, slots=True)
class CounterRepair:
    """A batch whose stored counters differed from its jobs, and what they become."""

    batch_id: int
    stored: BatchCounters
    derived: BatchCounters
    complete: bool
    state: BatchState

    def describe(self) -> str:
        """``n_completed 158 -> 150, n_succeeded 20 -> 12`` (only what changed)."""
        old, new = self.stored, self.derived
        return ", ".join(
            f"{name} {getattr(old, name)} -> {getattr(new, name)}"
            for name in BatchCounters.__dataclass_fields__
            if getattr(old, name) != getattr(new, name)
        )


def counters_from_states(n_by_state: Mapping[str, int]) -> BatchCounters:
    """The counters a batch should have, from how many of its jobs are in each state."""
    n_succeeded = n_by_state.get(JobState.SUCCESS, 0)
    n_failed = n_by_state.get(JobState.FAILED, 0) + n_by_state.get(JobState.ERROR, 0)
    n_cancelled = n_by_state.get(JobState.CANCELLED, 0)
    return BatchCounters(
        n_jobs=sum(n_by_state.values()),
        n_completed=n_succeeded + n_failed + n_cancelled,
        n_succeeded=n_succeeded,
        n_failed=n_failed,
        n_cancelled=n_cancelled,
    )


def find_drift(
    stored: Mapping[int, StoredBatch], n_by_state: Mapping[int, Mapping[str, int]]
) -> list[CounterRepair]:
    """The batches whose stored counters (or completeness) differ from their jobs."""
    repairs = []
    for batch_id, row in sorted(stored.items()):
        derived = counters_from_states(n_by_state.get(batch_id, {}))
        complete = derived.n_completed >= derived.n_jobs
        state = batch_state(
            complete=complete,
            cancelled=row.cancelled,
            n_failed=derived.n_failed,
            n_cancelled=derived.n_cancelled,
        )
        if derived != row.counters or complete != row.complete or state != row.state:
            repairs.append(CounterRepair(batch_id, row.counters, derived, complete, state))
    return repairs


def _load(conn: Connection) -> tuple[dict[int, StoredBatch], dict[int, dict[str, int]]]:
    """The stored counters of live batches, and their jobs counted by state."""
    stored = {
        row.id: StoredBatch(
            BatchCounters(
                row.n_jobs, row.n_completed, row.n_succeeded, row.n_failed, row.n_cancelled
            ),
            complete=row.complete,
            cancelled=row.cancelled,
            state=row.state,
        )
        for row in conn.execute(
            select(
                Batch.id,
                Batch.n_jobs,
                Batch.n_completed,
                Batch.n_succeeded,
                Batch.n_failed,
                Batch.n_cancelled,
                Batch.complete,
                Batch.cancelled,
                Batch.state,
            ).where(Batch.deleted.is_(False))
        )
    }
    n_by_state: dict[int, dict[str, int]] = defaultdict(dict)
    for batch_id, state, n in conn.execute(
        select(Job.batch_id, Job.state, func.count()).group_by(Job.batch_id, Job.state)
    ):
        n_by_state[batch_id][state] = n
    return stored, n_by_state


_b = batches_table.c
_COMPLETE = bindparam("b_complete", type_=Boolean)
_REWRITE = (
    update(batches_table)
    .where(_b.id == bindparam("b_id"))
    .values(
        n_jobs=bindparam("b_jobs"),
        n_completed=bindparam("b_completed"),
        n_succeeded=bindparam("b_succeeded"),
        n_failed=bindparam("b_failed"),
        n_cancelled=bindparam("b_cancelled"),
        complete=_COMPLETE,
        state=bindparam("b_state"),
        # a batch that becomes complete here completes now; one that is not loses its time
        time_completed=case(
            (_COMPLETE, func.coalesce(_b.time_completed, bindparam("b_now"))), else_=None
        ),
    )
)


def repair_counters(conn: Connection, now: float) -> list[CounterRepair]:
    """Rewrite the counters that drifted from the jobs table; returns (and logs) each repair."""
    repairs = find_drift(*_load(conn))
    if not repairs:
        return []
    conn.execute(
        _REWRITE,
        [
            {
                "b_id": r.batch_id,
                "b_jobs": r.derived.n_jobs,
                "b_completed": r.derived.n_completed,
                "b_succeeded": r.derived.n_succeeded,
                "b_failed": r.derived.n_failed,
                "b_cancelled": r.derived.n_cancelled,
                "b_complete": r.complete,
                "b_state": str(r.state),
                "b_now": now,
            }
            for r in repairs
        ],
    )
    for r in repairs:
        log.warning(
            "batch %d: counters disagreed with its jobs table, repaired (%s)",
            r.batch_id,
            r.describe() or f"complete -> {r.complete}, state -> {r.state}",
        )
    return repairs
