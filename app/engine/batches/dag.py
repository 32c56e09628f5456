"""DAG readiness as pure functions over plain data (no database, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.models.tables import COMPLETE_STATES, BatchState, JobState


@dataclass(frozen=True, slots=True)
class InitialState:
    """The state a newly inserted job starts in."""

    state: JobState
    n_pending_parents: int
    cancelled: bool


def initial_states(
    job_ids: Sequence[int],
    parent_ids: Sequence[Sequence[int]],
    always_run: Sequence[bool],
    old_states: Mapping[int, str],
) -> list[InitialState]:
    """States of an update's jobs, given in topological order.

    ``old_states`` holds the current state of every parent that belongs to an earlier update.
    A job is Ready with no unfinished parents, else Pending; a job with a parent that ended
    without success is flagged cancelled, and one that would be Ready ends Cancelled at once
    unless it is always_run (its own children then see a cancelled parent).
    """
    born_cancelled: set[int] = set()
    result: list[InitialState] = []
    for job_id, parents, run_always in zip(job_ids, parent_ids, always_run, strict=True):
        pending = 0
        cancelled = False
        for parent in parents:
            old = old_states.get(parent)
            if old is not None and old in COMPLETE_STATES:
                cancelled |= old != JobState.SUCCESS
            elif parent in born_cancelled:
                cancelled = True
            else:
                pending += 1
        if pending:
            state = JobState.PENDING
        elif cancelled and not run_always:
            state = JobState.CANCELLED
            born_cancelled.add(job_id)
        else:
            state = JobState.READY
        result.append(InitialState(state, pending, cancelled))
    return result


def batch_state(*, complete: bool, cancelled: bool, n_failed: int, n_cancelled: int) -> BatchState:
    """A batch's state as users see it: failure beats cancelled beats success."""
    if not complete:
        return BatchState.RUNNING
    if n_failed:
        return BatchState.FAILURE
    if cancelled or n_cancelled:
        return BatchState.CANCELLED
    return BatchState.SUCCESS
