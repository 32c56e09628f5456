"""A batch's timeline: every attempt as a bar on its worker's row, coloured by outcome.

Plain data for the desktop's timeline window and for `labbatch timeline` (HTML, see
`timeline_html`); the same rows either way, read again while the batch runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.engine.batches.frontend import BATCH_COLUMNS, batch_info
from app.engine.records import BatchInfo
from app.errors import NotFoundError
from app.models.db import Database
from app.models.tables import Attempt, Batch, Job, JobState


class Outcome(StrEnum):
    """How an attempt ended, as the timeline colours it."""

    WAITING = "waiting"  # scheduled on its worker, not started yet
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"
    LOST = "lost"  # its worker was lost or preempted: the job was tried again


# one palette for the window and the HTML file, the desktop's state colours (app.views.style)
OUTCOME_COLORS = {
    Outcome.WAITING: "#42a5f5",  # as Creating
    Outcome.RUNNING: "#1e88e5",
    Outcome.SUCCESS: "#43a047",
    Outcome.FAILED: "#e53935",
    Outcome.ERROR: "#fb8c00",
    Outcome.CANCELLED: "#757575",
    Outcome.LOST: "#ab47bc",
}
STAGING_COLOR = "#26a69a"  # staging files in and out, drawn hatched apart from the run


@dataclass(frozen=True, slots=True)
class AttemptBar:
    """One attempt of one job on one worker; times are Unix seconds.

    ``staging_start_s`` / ``staging_ms`` are the time spent putting the job's files in place
    before its command ran (and saving its outputs after); None where the worker recorded none.
    """

    job_id: int
    job_name: str
    attempt: int
    worker: str
    scheduled_s: float
    start_s: float | None
    end_s: float | None
    outcome: Outcome
    end_reason: str | None = None
    staging_start_s: float | None = None
    staging_ms: int | None = None

    @property
    def begin_s(self) -> float:
        """Where the bar starts: staging, the run, or the scheduling, whichever came first."""
        starts = [t for t in (self.staging_start_s, self.start_s) if t is not None]
        return min(starts) if starts else self.scheduled_s

    def finish_s(self, now_s: float) -> float:
        """Where the bar ends: its end, or ``now_s`` while it runs."""
        return self.end_s if self.end_s is not None else now_s

    @property
    def run_ms(self) -> int | None:
        if self.start_s is None or self.end_s is None:
            return None
        return round((self.end_s - self.start_s) * 1000)


@dataclass(frozen=True, slots=True)
class Timeline:
    """A batch's attempts by worker, as of ``now_s``."""

    batch: BatchInfo
    now_s: float
    workers: tuple[str, ...]  # rows, in the order the workers first ran something
    bars: tuple[AttemptBar, ...]

    @property
    def start_s(self) -> float:
        return min((b.begin_s for b in self.bars), default=self.batch.time_created)

    @property
    def end_s(self) -> float:
        end = max((b.finish_s(self.now_s) for b in self.bars), default=self.start_s)
        return max(end, self.start_s + 1.0)

    @property
    def live(self) -> bool:
        """True while the batch runs: the timeline grows."""
        return not self.batch.complete

    def describe(self) -> str:
        """'3 attempts on 1 worker': what the picture holds."""
        n_bars, n_workers = len(self.bars), len(self.workers)
        return (
            f"{n_bars} attempt{'' if n_bars == 1 else 's'} on "
            f"{n_workers} worker{'' if n_workers == 1 else 's'}"
        )

    def counts(self) -> dict[Outcome, int]:
        counts = dict.fromkeys(Outcome, 0)
        for bar in self.bars:
            counts[bar.outcome] += 1
        return counts


def tick_offsets_s(span_s: float, *, most: int = 10) -> list[float]:
    """Round offsets from the start (1, 2 or 5 times a power of ten seconds) for an axis."""
    raw = max(span_s, 1e-3) / most
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [round(k * step, 9) for k in range(int(span_s / step) + 1)]


_COLUMNS = (
    Attempt.job_id,
    Attempt.attempt,
    Attempt.instance_name,
    Attempt.time_scheduled,
    Attempt.start_time,
    Attempt.end_time,
    Attempt.end_reason,
    Attempt.staging,
    Job.name,
    Job.state,
    Job.last_attempt,
)
_JOB_OUTCOME = {
    JobState.SUCCESS: Outcome.SUCCESS,
    JobState.FAILED: Outcome.FAILED,
    JobState.ERROR: Outcome.ERROR,
    JobState.CANCELLED: Outcome.CANCELLED,
}


def outcome_of(
    *, end_time: float | None, start_time: float | None, end_reason: str | None, job_state: str
) -> Outcome:
    """An attempt's outcome from its end reason, and its job's state for the last one."""
    if end_time is None:
        return Outcome.RUNNING if start_time is not None else Outcome.WAITING
    if end_reason == "completed":
        outcome = _JOB_OUTCOME.get(JobState(job_state))
        return outcome if outcome is not None else Outcome.SUCCESS
    if end_reason in ("error", "cancelled"):
        return Outcome(end_reason)
    return Outcome.LOST


def _bar(row: Any) -> AttemptBar:
    # a worker that staged files put them in place from the attempt's start (its figures)
    staged_in_s = (row.staging or {}).get("in_s")
    staging_start = row.start_time if staged_in_s is not None else None
    staging_ms = None if staged_in_s is None else round(staged_in_s * 1000)
    return AttemptBar(
        job_id=row.job_id,
        job_name=row.name,
        attempt=row.attempt,
        worker=row.instance_name,
        scheduled_s=row.time_scheduled,
        start_s=row.start_time,
        end_s=row.end_time,
        outcome=outcome_of(
            end_time=row.end_time,
            start_time=row.start_time,
            end_reason=row.end_reason,
            job_state=row.state if row.attempt == row.last_attempt else JobState.RUNNING,
        ),
        end_reason=row.end_reason,
        staging_start_s=staging_start,
        staging_ms=staging_ms,
    )


def read_timeline(conn: Connection, batch_id: int, *, now_s: float | None = None) -> Timeline:
    """The timeline of one batch (NotFoundError if there is none)."""
    row = conn.execute(select(*BATCH_COLUMNS).where(Batch.id == batch_id)).first()
    if row is None:
        raise NotFoundError(f"there is no batch {batch_id}")
    query = (
        select(*_COLUMNS)
        .join(Job, (Job.batch_id == Attempt.batch_id) & (Job.job_id == Attempt.job_id))
        .where(Attempt.batch_id == batch_id)
        .order_by(Attempt.time_scheduled, Attempt.job_id, Attempt.attempt)
    )
    bars = tuple(_bar(r) for r in conn.execute(query))
    workers = tuple(dict.fromkeys(b.worker for b in sorted(bars, key=lambda b: b.begin_s)))
    return Timeline(batch_info(row), now_s or time.time(), workers, bars)


async def load_timeline(db: Database, batch_id: int) -> Timeline:
    """Read a batch's timeline (the engine's sessions stay inside)."""
    return await db.read(lambda conn: read_timeline(conn, batch_id))
