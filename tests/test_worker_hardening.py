"""A worker agent against a hostile neighbour: what its jobs may see, what its HTTP face
answers, and what it does with the jobs an earlier worker of its work dir left running."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from app.protocol import LOG_PATH, JobRun, Outcome, bearer
from tests.worker_helpers import (
    Driver,
    WorkerProcess,
    connect,
    job,
    poll,
    process_gone,
    read_pids,
    start_worker,
)

# What bash itself adds to any environment it starts with.
BASH_OWN = {"PWD", "SHLVL", "_", "OLDPWD"}
JOB_VARS = {"PATH", "HOME", "TMPDIR"}


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    env = dict(os.environ)
    env |= {
        "LABBATCH_SECRET_KEY": "master-key-of-the-driver",
        "LABBATCH_HOME": str(tmp_path / "data-dir"),
        "AWS_SECRET_ACCESS_KEY": "cloud-key",
    }
    started = await start_worker(tmp_path, env=env)
    yield started
    await started.stop()


async def test_job_environment_is_minimal(driver: Driver) -> None:
    # a spec's env cannot move LABBATCH_SCRATCH, which the leftover sweep goes by
    await driver.schedule(job(1, "env -0", env={"MY_VAR": "x", "LABBATCH_SCRATCH": "/elsewhere"}))
    result = await driver.result((1, 1, 1))
    env = dict(item.split("=", 1) for item in result.log.split("\0") if item)
    names = set(env) - BASH_OWN
    labbatch = {name for name in names if name.startswith("LABBATCH_")}
    assert names - labbatch == JOB_VARS | {"MY_VAR"}
    assert labbatch == {
        "LABBATCH_BATCH_ID",
        "LABBATCH_JOB_ID",
        "LABBATCH_JOB_NAME",
        "LABBATCH_ATTEMPT_ID",
        "LABBATCH_SCRATCH",
        "LABBATCH_BATCH_DIR",
    }
    assert env["TMPDIR"] == env["LABBATCH_SCRATCH"] != "/elsewhere"
    for secret in ("master-key-of-the-driver", "cloud-key", "data-dir"):
        assert secret not in result.log


async def test_log_offset_past_any_size_is_empty(worker: WorkerProcess, driver: Driver) -> None:
    await driver.schedule(job(1, "echo one"))
    assert (await driver.result((1, 1, 1))).outcome is Outcome.SUCCESS
    url = worker.base_url + LOG_PATH.format(batch_id=1, job_id=1, attempt=1)
    auth = {"Authorization": bearer(worker.token)}
    async with aiohttp.ClientSession() as session:
        for offset in ("4", "99", "9" * 40):
            async with session.get(url, params={"offset": offset}, headers=auth) as response:
                assert (response.status, await response.read()) == (200, b"")
        async with session.get(url, params={"offset": "-1"}, headers=auth) as response:
            assert response.status == 400


def guard_of(worker_pid: int) -> int:
    """The job guard: the worker's only child running guard_main.py."""
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
    for child in map(int, children):
        if b"guard_main.py" in Path(f"/proc/{child}/cmdline").read_bytes():
            return child
    raise AssertionError("the worker has no job guard")


async def test_killed_worker_takes_its_jobs_along(worker: WorkerProcess, driver: Driver) -> None:
    pids_path = worker.work_dir.parent / "pids"
    await driver.schedule(job(1, f"sleep 60 & echo $$ > {pids_path}; echo $! >> {pids_path}; wait"))
    await poll(lambda: len(read_pids(pids_path)) == 2)
    worker.proc.send_signal(signal.SIGKILL)
    # The guard acts on end-of-file at once; the deadline only absorbs a loaded CI machine.
    await poll(lambda: all(process_gone(pid) for pid in read_pids(pids_path)), timeout_s=5.0)


async def test_killed_worker_takes_along_jobs_started_together(
    worker: WorkerProcess, driver: Driver
) -> None:
    # The guard hears of the jobs started in one pass (here: one Schedule, then the exit of
    # job 3, which starts job 4) in one write: each of them still dies with the worker.
    def sleeper(job_id: int, cores_mcpu: int) -> JobRun:
        pids_path = worker.work_dir.parent / f"pids-{job_id}"
        command = f"sleep 60 & echo $$ > {pids_path}; echo $! >> {pids_path}; wait"
        return job(job_id, command, cores_mcpu=cores_mcpu)

    # 2 cores: jobs 1 to 3 start at once, job 4 as soon as job 3 has ended
    await driver.schedule(sleeper(1, 500), sleeper(2, 500), job(3, "true", cores_mcpu=1000))
    await driver.schedule(sleeper(4, 1000))
    assert (await driver.result((1, 3, 1))).outcome is Outcome.SUCCESS
    paths = [worker.work_dir.parent / f"pids-{job_id}" for job_id in (1, 2, 4)]
    await poll(lambda: all(len(read_pids(path)) == 2 for path in paths))
    worker.proc.send_signal(signal.SIGKILL)
    pids = [pid for path in paths for pid in read_pids(path)]
    await poll(lambda: all(process_gone(pid) for pid in pids), timeout_s=5.0)


async def test_a_new_worker_kills_what_the_last_one_left(tmp_path: Path) -> None:
    # Worker and guard die together (say, the OOM killer took both): the job lives on until
    # the next worker of that work dir starts, which kills it before it says it is ready.
    first = await start_worker(tmp_path)
    pids_path = tmp_path / "pids"
    driver = await connect(first)
    await driver.schedule(job(1, f"sleep 60 & echo $$ > {pids_path}; echo $! >> {pids_path}; wait"))
    await poll(lambda: len(read_pids(pids_path)) == 2)
    os.kill(guard_of(first.proc.pid), signal.SIGKILL)
    first.proc.send_signal(signal.SIGKILL)
    await first.proc.wait()
    await driver.close()
    pids = read_pids(pids_path)
    assert not any(process_gone(pid) for pid in pids)

    second = await start_worker(tmp_path)
    try:
        assert all(process_gone(pid) for pid in pids)
        assert "killed 2 job process(es) an earlier worker left behind" in second.stderr_text()
    finally:
        await second.stop()
