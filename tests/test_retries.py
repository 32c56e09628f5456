"""Retries beyond Hail Batch: on failure, after OOM with more memory, and re-running a batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.engine.batches import frontend, rerun
from app.engine.batches.retries import decide
from app.errors import UserError
from app.models.tables import Job
from app.protocol import JobResult, Outcome
from tests.engine_helpers import USER, engine

GiB = 1 << 30


def failed(exit_code: int, error: str | None = None) -> JobResult:
    return JobResult(1, 1, 1, Outcome.FAILED, exit_code, 0.0, 1.0, error)


@pytest.mark.parametrize(
    ("result", "policy", "attempts", "retried", "memory"),
    [
        (failed(3), None, 1, False, GiB),
        (failed(3), {"on": ["failure"], "max": 2}, 1, True, GiB),
        (failed(3), {"on": ["failure"], "max": 2}, 2, True, GiB),
        (failed(3), {"on": ["failure"], "max": 2}, 3, False, GiB),  # 1 run + 2 retries spent
        (failed(3), {"on": ["oom"], "max": 2}, 1, False, GiB),  # not an OOM
        (
            failed(137, "killed by signal 9 (out of memory?)"),
            {"on": ["oom"], "max": 2, "memory_factor": 2},
            1,
            True,
            2 * GiB,
        ),
        (
            failed(137),
            {"on": ["failure", "oom"], "max": 1, "memory_factor": 1.5},
            1,
            True,
            int(1.5 * GiB),
        ),
        (
            JobResult(1, 1, 1, Outcome.ERROR, None, 0.0, 1.0, "timed out after 1s"),
            {"on": ["failure"], "max": 3},
            1,
            False,
            GiB,
        ),  # a timeout is not retried
    ],
)
def test_decide(
    result: JobResult, policy: dict | None, attempts: int, retried: bool, memory: int
) -> None:
    decision = decide(result, policy, attempts_so_far=attempts, memory_bytes=GiB)
    assert (decision is not None) == retried
    if decision is not None:
        assert decision.memory_bytes == memory


async def test_failures_are_retried_until_the_job_succeeds(db_url: str) -> None:
    async with engine(db_url) as eng:
        batch = await eng.submit(
            """
            version: 1
            jobs:
              - name: flaky
                retry: {on: [failure], max: 2}
                command: '[ "$LABBATCH_ATTEMPT_ID" -ge 3 ] || exit 4'
              - name: hopeless
                retry: {on: [failure], max: 1}
                command: exit 5
            """
        )
        done = await eng.wait(batch)
        jobs = await eng.jobs(batch)
        assert jobs["flaky"].state == "Success" and jobs["flaky"].n_attempts == 3
        assert jobs["hopeless"].state == "Failed" and jobs["hopeless"].n_attempts == 2
        assert jobs["hopeless"].exit_code == 5
        assert done.state == "failure"


async def test_out_of_memory_retries_with_more_memory(db_url: str) -> None:
    async with engine(db_url) as eng:
        batch = await eng.submit(
            """
            version: 1
            jobs:
              - name: greedy
                memory: 1Gi
                retry: {on: [oom], max: 2, memory_factor: 2}
                command: 'if [ "$LABBATCH_ATTEMPT_ID" = 1 ]; then kill -9 $$; fi; echo fits'
            """
        )
        assert (await eng.wait(batch)).state == "success"
        async with eng.db.connect() as conn:
            memory = (
                await conn.execute(select(Job.memory_bytes).where(Job.batch_id == batch))
            ).scalar_one()
        assert memory == 2 * GiB
        detail = await frontend.job_detail(eng.db, batch, "greedy")
        assert len(detail.attempts) == 2
        assert await frontend.job_log(eng.db, batch, "greedy") == "fits\n"


async def test_retry_batch_reruns_failures_and_what_they_stopped(
    db_url: str, tmp_path: Path
) -> None:
    once = tmp_path / "failed-once"
    async with engine(db_url) as eng:
        batch = await eng.submit(
            f"""
            version: 1
            jobs:
              - {{name: flaky, command: 'if [ ! -e {once} ]; then touch {once}; exit 3; fi'}}
              - {{name: after, command: 'true', depends_on: [flaky]}}
              - {{name: fine, command: 'echo fine'}}
            """
        )
        assert (await eng.wait(batch)).state == "failure"
        fine_before = (await eng.jobs(batch))["fine"]
        assert await rerun.retry_batch(eng.db, batch, user=USER, failed_only=True) == 2
        eng.runtime.notify_changed()
        done = await eng.wait(batch)
        jobs = await eng.jobs(batch)
        assert done.state == "success" and done.n_failed == 0 and done.n_succeeded == 3
        assert jobs["after"].state == "Success"
        assert jobs["fine"].time_ended == fine_before.time_ended  # successes are left alone
        assert await rerun.retry_batch(eng.db, batch, user=USER) == 0


async def test_retry_is_refused_while_the_batch_runs(db_url: str) -> None:
    async with engine(db_url, start=False) as eng:
        batch = await eng.submit("version: 1\njobs: [{name: a, command: 'true'}]\n")
        with pytest.raises(UserError, match="still running"):
            await rerun.retry_batch(eng.db, batch, user=USER)
