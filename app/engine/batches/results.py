"""Applying workers' reports (attempt started, attempt ended) to the database in bulk."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import JSON, bindparam, insert, select, update
from sqlalchemy.engine import Connection

from app.engine.batches.completion import Changes, JobEnd, chunks, end_jobs
from app.engine.batches.retries import split_retries
from app.models.prepared import Prepared
from app.models.tables import Job, JobLog, JobState, attempts_table
from app.protocol import JobResult, JobStart, Outcome

_attempts = attempts_table
_THIS_ATTEMPT = (
    _attempts.c.batch_id == bindparam("b_b"),
    _attempts.c.job_id == bindparam("b_j"),
    _attempts.c.attempt == bindparam("b_a"),
)
_set_start = Prepared(
    update(_attempts)
    .where(*_THIS_ATTEMPT, _attempts.c.start_time.is_(None))
    .values(start_time=bindparam("b_t"))
)
_set_end = Prepared(
    update(_attempts)
    .where(*_THIS_ATTEMPT, _attempts.c.end_time.is_(None))
    .values(start_time=bindparam("b_s"), end_time=bindparam("b_e"), end_reason=bindparam("b_r"))
)
_set_staging = update(_attempts).where(*_THIS_ATTEMPT).values(staging=bindparam("b_st", type_=JSON))
_running_attempts = Prepared(
    select(Job.job_id, Job.last_attempt).where(
        Job.batch_id == bindparam("b_b"),
        Job.job_id.in_(bindparam("b_ids", expanding=True)),
        Job.state == str(JobState.RUNNING),
    )
)

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


def record_starts(conn: Connection, starts: Sequence[JobStart]) -> None:
    """Set the start time of attempts that began running on their worker."""
    if not starts:
        return
    _set_start.executemany(
        conn,
        [
            {"b_b": s.batch_id, "b_j": s.job_id, "b_a": s.attempt, "b_t": s.start_time}
            for s in starts
        ],
    )


def _current_attempts(conn: Connection, results: Sequence[JobResult]) -> dict[tuple[int, int], int]:
    """(batch, job) -> current attempt, for the jobs among ``results`` that are Running."""
    by_batch: dict[int, list[int]] = defaultdict(list)
    for r in results:
        by_batch[r.batch_id].append(r.job_id)
    current: dict[tuple[int, int], int] = {}
    for batch_id, job_ids in by_batch.items():
        for part in chunks(sorted(set(job_ids))):
            rows = _running_attempts.execute(conn, {"b_b": batch_id, "b_ids": list(part)})
            current.update({(batch_id, job_id): last for job_id, last in rows})
    return current


def _fresh_results(conn: Connection, results: Sequence[JobResult]) -> list[JobResult]:
    """The results that end their job's current attempt (others are stale or repeated)."""
    current = _current_attempts(conn, results)
    return [r for r in results if current.get((r.batch_id, r.job_id)) == r.attempt]


def apply_results(conn: Connection, results: Sequence[JobResult], now: float) -> Changes:
    """End attempts and jobs from workers' results; stale or repeated ones only close attempts."""
    results = list({r.ref.key(): r for r in results}.values())
    if not results:
        return Changes()
    _set_end.executemany(
        conn,
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
    staged = [r for r in results if r.staging is not None]  # only attempts with files
    if staged:
        conn.execute(
            _set_staging,
            [
                {"b_b": r.batch_id, "b_j": r.job_id, "b_a": r.attempt, "b_st": r.staging}
                for r in staged
            ],
        )
    fresh = _fresh_results(conn, results)
    failed = [r for r in fresh if r.outcome == Outcome.FAILED]
    retried = {d.result.ref.key() for d in split_retries(conn, failed, now)} if failed else set()
    logs = [
        {"batch_id": r.batch_id, "job_id": r.job_id, "attempt": r.attempt, "text": r.log}
        for r in fresh
        if r.log
    ]
    if logs:
        conn.execute(insert(JobLog), logs)
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
        if r.ref.key() not in retried
    ]
    changes = end_jobs(conn, ends, now)
    changes.n_ready += len(retried)
    return changes
