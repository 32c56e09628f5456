"""Retrying chosen failed jobs: with the jobs they cancelled, more memory, standard workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.engine.batches import rerun
from app.engine.browse import job_nodes, job_states
from app.errors import UserError
from app.models.tables import Job
from tests.engine_helpers import USER, engine

GIB = 1024**3
DAG = """version: 1
name: two-failures
jobs:
  - {name: a, command: 'test -f $LABBATCH_BATCH_DIR/ok || exit 3', memory: 1Gi}
  - {name: after-a, depends_on: [a], command: 'echo after'}
  - {name: b, command: 'exit 4', cpu: 0.5}
"""


async def _resources(eng, batch_id: int) -> dict[str, tuple[int, bool]]:  # type: ignore[no-untyped-def]
    async with eng.db.connect() as conn:
        rows = await conn.execute(
            select(Job.name, Job.memory_bytes, Job.preemptible).where(Job.batch_id == batch_id)
        )
        return {name: (mem, pre) for name, mem, pre in rows}


async def test_a_retried_job_runs_again_with_the_jobs_it_cancelled(db_url: str) -> None:
    async with engine(db_url) as eng:
        batch_id = await eng.submit(DAG)
        await eng.wait(batch_id)
        jobs = await eng.jobs(batch_id)
        assert [jobs[n].state for n in ("a", "after-a", "b")] == ["Failed", "Cancelled", "Failed"]
        nodes = await job_nodes(eng.db, batch_id)
        assert sorted(nodes.values()) == ["a", "after-a", "b"]

        batch_dir = eng.runtime.driver.batch_dir(batch_id)
        assert batch_dir is not None
        (Path(batch_dir) / "ok").write_text("")
        n = await rerun.retry_jobs(
            eng.db, batch_id, [jobs["a"].job_id], user=USER, memory_factor=2, non_preemptible=True
        )
        assert n == 2  # a and the job its failure cancelled; b stays failed
        eng.runtime.notify_changed()
        done = await eng.wait(batch_id)
        states = await job_states(eng.db, batch_id)
        assert states[jobs["a"].job_id] == "Success"
        assert states[jobs["after-a"].job_id] == "Success"
        assert states[jobs["b"].job_id] == "Failed"
        assert done.state == "failure" and done.n_completed == 3
        resources = await _resources(eng, batch_id)
        assert resources["a"] == (2 * GIB, False)
        assert resources["b"][1] is True  # untouched


async def test_twice_the_memory_of_a_job_sized_by_class() -> None:
    assert rerun.more_memory_bytes(0, "standard", 500, 2.0) == 4 * GIB
    assert rerun.more_memory_bytes(0, "highmem", 2000, 2.0) == 32 * GIB
    assert rerun.more_memory_bytes(3 * GIB, None, 1000, 2.0) == 6 * GIB


async def test_retrying_a_running_batch_or_a_job_that_did_not_fail(db_url: str) -> None:
    async with engine(db_url) as eng:
        batch_id = await eng.submit("version: 1\njobs: [{name: nap, command: 'sleep 30'}]\n")
        with pytest.raises(UserError, match="still running"):
            await rerun.retry_jobs(eng.db, batch_id, [1], user=USER)
        with pytest.raises(UserError, match="can only give more memory"):
            await rerun.retry_jobs(eng.db, batch_id, [1], user=USER, memory_factor=0.5)
        with pytest.raises(UserError, match="belongs to"):
            await rerun.retry_jobs(eng.db, batch_id, [1], user="eve")
