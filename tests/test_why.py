"""`labbatch why`: the reason a Ready job waits, from a snapshot of its pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.batches import frontend
from app.engine.scheduler.why import PoolSnapshot, explain, why_ready
from app.engine.workers.pools import PoolConfig
from tests.engine_helpers import engine

ROOT = Path(__file__).resolve().parents[1]

POOL = PoolConfig(
    name="p", worker_cores_mcpu=2000, max_instances=2, max_live_instances=2, boot_time_s=30
)


@pytest.mark.parametrize(
    ("cores", "snap", "driver", "expected"),
    [
        (4000, PoolSnapshot(POOL), True, "needs 4 cores but the largest worker of pool p has 2"),
        (1000, PoolSnapshot(POOL, [2000]), False, "no driver is running"),
        (1000, PoolSnapshot(POOL, [], n_booting=1), True, "waiting for a worker of pool p to boot"),
        (
            1000,
            PoolSnapshot(POOL, [2000], ready_by_user={"ann": 1000}),
            True,
            "starts at the next scheduling pass",
        ),
        (
            1000,
            PoolSnapshot(POOL, [2000], ready_by_user={"ann": 1000}, ahead_in_queue=3),
            True,
            "3 of ann's jobs are ahead of it",
        ),
        (
            1000,
            PoolSnapshot(
                POOL,
                [1000],
                running_by_user={"ann": 3000},
                ready_by_user={"ann": 1000, "bob": 4000},
            ),
            True,
            "waiting for its user's fair share: ann runs 3 cores",
        ),
        (
            1000,
            PoolSnapshot(POOL, [0, 500]),
            True,
            "pool p is at its maximum of 2 worker(s) and none has 1 free cores",
        ),
        (1000, PoolSnapshot(POOL, [500]), True, "the autoscaler is adding workers (up to 2"),
    ],
)
def test_why_ready(cores: int, snap: PoolSnapshot, driver: bool, expected: str) -> None:
    assert expected in why_ready(cores, "ann", snap, driver=driver)


async def test_a_cancelled_job_names_the_parent_that_failed(db_url: str) -> None:
    text = (ROOT / "examples" / "failure.yaml").read_text()
    async with engine(db_url, cores=1) as eng:
        batch = await eng.submit(text)
        await eng.wait(batch)
        why = await explain(eng.db, batch, "after-flaky")
    assert why == (
        f"job after-flaky (2) of batch {batch} is Cancelled: it never ran because its parent "
        "flaky failed (exit code 3)"
    )


async def test_a_job_of_a_cancelled_batch_says_the_batch_was_cancelled(db_url: str) -> None:
    async with engine(db_url, cores=1, start=False) as eng:
        batch = await eng.submit("version: 1\njobs: [{name: a, command: 'true'}]\n")
        await frontend.cancel_batch(eng.db, batch)
        why = await explain(eng.db, batch, "a")
    assert why.endswith("is Cancelled: the batch was cancelled before it ran")
