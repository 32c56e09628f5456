"""A job never outlives its attempt: SIGKILLed workers take their jobs along, and no attempt
runs beside the one before it (real driver, real local workers, real job processes)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.engine.batches import frontend
from tests.engine_helpers import Engine, engine, kill_worker_running, until
from tests.worker_helpers import process_gone, read_pids

# Attempt 1 writes S1, then a tick T1 every 20 ms from its shell, beside a background child;
# later attempts write S<n>, T<n> and E<n>. Had attempt 1 outlived its worker, a T1 would
# follow the next S line (and its processes would not be gone).
TICKER = """
              echo S$LABBATCH_ATTEMPT_ID >> {marks}
              if [ "$LABBATCH_ATTEMPT_ID" = 1 ]; then
                sleep 60 &
                echo $$ > {pids}.tmp; echo $! >> {pids}.tmp; mv {pids}.tmp {pids}
                while true; do echo T1 >> {marks}; sleep 0.02; done
              fi
              echo T$LABBATCH_ATTEMPT_ID >> {marks}; echo E$LABBATCH_ATTEMPT_ID >> {marks}
"""


def marks_after(lines: list[str], mark: str) -> list[str]:
    return lines[lines.index(mark) + 1 :]


async def two_workers(eng: Engine) -> None:
    async def ready() -> bool:
        return sum(i.healthy for i in eng.runtime.driver.instances.values()) == 2

    await until(ready, what="two healthy workers")


async def kill_mid_job(eng: Engine, batch_id: int, pids_path: Path) -> list[int]:
    """SIGKILL the worker of the running job; assert its processes die within a second."""

    async def started() -> bool:
        return len(read_pids(pids_path)) == 2

    await until(started, what="the job to start")
    pids = read_pids(pids_path)
    await kill_worker_running(eng, batch_id, "victim")
    killed_at = time.monotonic()
    while not all(process_gone(pid) for pid in pids):
        assert time.monotonic() - killed_at < 1.0, "job processes outlived their worker by 1 s"
        await asyncio.sleep(0.01)
    return pids


async def test_worker_killed_mid_job_takes_its_job_along(db_url: str, tmp_path: Path) -> None:
    marks, pids_path = tmp_path / "marks", tmp_path / "pids"
    async with engine(db_url, n_workers=2, cores=1) as eng:
        await two_workers(eng)
        command = TICKER.format(marks=marks, pids=pids_path)
        batch_id = await eng.submit(
            f"version: 1\njobs:\n  - name: victim\n    cpu: 1\n    command: |{command}"
        )
        await kill_mid_job(eng, batch_id, pids_path)
        batch = await eng.wait(batch_id)
        lines = marks.read_text().split()
        detail = await frontend.job_detail(eng.db, batch_id, "victim")
    assert batch.state == "success"
    assert lines[0] == "S1" and "S2" in lines
    assert marks_after(lines, "S2") == ["T2", "E2"], "attempt 1 ran beside attempt 2"
    assert [a.attempt for a in detail.attempts] == [1, 2]
    assert "exited with code -9" in (detail.attempts[0].end_reason or "")


async def test_always_run_child_starts_after_the_killed_job_is_gone(
    db_url: str, tmp_path: Path
) -> None:
    marks, pids_path = tmp_path / "marks", tmp_path / "pids"
    async with engine(db_url, n_workers=2, cores=1) as eng:
        await two_workers(eng)
        command = TICKER.format(marks=marks, pids=pids_path)
        batch_id = await eng.submit(
            f"version: 1\njobs:\n  - name: victim\n    cpu: 1\n    n_max_attempts: 1\n"
            f"    command: |{command}\n"
            f"  - name: cleanup\n    depends_on: [victim]\n    always_run: true\n"
            f"    command: echo C >> {marks}\n"
        )
        await kill_mid_job(eng, batch_id, pids_path)
        await eng.wait(batch_id)
        jobs = await eng.jobs(batch_id)
        lines = marks.read_text().split()
    assert jobs["victim"].state == "Error"
    assert jobs["cleanup"].state == "Success"
    assert marks_after(lines, "C") == [], "the clean-up ran while the job still wrote"
