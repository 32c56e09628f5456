"""Applying workers' reports (attempt started, attempt ended) to the database in bulk."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.engine.completion import Changes, JobEnd, chunks, end_jobs
from app.models.tables import Attempt, Job, JobLog, JobState
from app.protocol import JobResult, JobStart, Outcome

_attempts = Attempt.__table__

OUTCOME_STATE = {
    Outcome.SUCCESS: JobState.SUCCESS,
    Outcome.FAILED: JobState.FAILED,
    Outcome.ERROR: JobState.ERROR,
    Outcome.CANCELLED: JobState.CANCELLED,
}
OUTCOME_REASON = {
    Outcome.SUCCESS: "completed",
    Outcome.FAILED: "completed",
    Outcome.ERROR: "error",
    Outcome.CANCELLED: "cancelled",
}


async def record_starts(conn: AsyncConnection, starts: Sequence[JobStart]) -> None:
    """Set the start time of attempts that began running on their worker."""
    if not starts:
        return
    await conn.execute(
        update(_attempts)
        .where(
            _attempts.c.batch_id == bindparam("b_b"),
            _attempts.c.job_id == bindparam("b_j"),
            _attempts.c.attempt == bindparam("b_a"),
            _attempts.c.start_time.is_(None),
        )
        .values(start_time=bindparam("b_t")),
        [
            {"b_b": s.batch_id, "b_j": s.job_id, "b_a": s.attempt, "b_t": s.start_time}
            for s in starts
        ],
    )


async def _current_attempts(
    conn: AsyncConnection, results: Sequence[JobResult]
) -> dict[tuple[int, int], int]:
    """(batch, job) -> current attempt, for the jobs among ``results`` that are Running."""
    by_batch: dict[int, list[int]] = defaultdict(list)
    for r in results:
        by_batch[r.batch_id].append(r.job_id)
    current: dict[tuple[int, int], int] = {}
    for batch_id, job_ids in by_batch.items():
        for part in chunks(sorted(set(job_ids))):
            rows = await conn.execute(
                select(Job.job_id, Job.last_attempt).where(
                    Job.batch_id == batch_id,
                    Job.job_id.in_(part),
                    Job.state == JobState.RUNNING,
                )
            )
            current.update({(batch_id, job_id): last for job_id, last in rows})
    return current


async def apply_results(conn: AsyncConnection, results: Sequence[JobResult], now: float) -> Changes:
    """End attempts and jobs from workers' results; stale or repeated ones only close attempts."""
    results = list({r.ref.key(): r for r in results}.values())
    if not results:
        return Changes()
    await conn.execute(
        update(_attempts)
        .where(
            _attempts.c.batch_id == bindparam("b_b"),
            _attempts.c.job_id == bindparam("b_j"),
            _attempts.c.attempt == bindparam("b_a"),
            _attempts.c.end_time.is_(None),
        )
        .values(
            start_time=bindparam("b_s"), end_time=bindparam("b_e"), end_reason=bindparam("b_r")
        ),
        [
            {
                "b_b": r.batch_id,
                "b_j": r.job_id,
                "b_a": r.attempt,
                "b_s": r.start_time,
                "b_e": r.end_time,
                "b_r": OUTCOME_REASON[r.outcome],
            }
            for r in results
        ],
    )
    current = await _current_attempts(conn, results)
    fresh = [r for r in results if current.get((r.batch_id, r.job_id)) == r.attempt]
    logs = [
        {"batch_id": r.batch_id, "job_id": r.job_id, "attempt": r.attempt, "text": r.log}
        for r in fresh
        if r.log
    ]
    if logs:
        await conn.execute(insert(JobLog), logs)
    ends = [
        JobEnd(
            r.batch_id,
            r.job_id,
            OUTCOME_STATE[r.outcome],
            r.end_time,
            exit_code=r.exit_code,
            error=r.error,
        )
        for r in fresh
    ]
    return await end_jobs(conn, ends, now)
