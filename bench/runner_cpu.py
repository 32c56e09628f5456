"""The worker's own CPU per no-op job in the job runner alone: start, reap, report, forget.

No driver, no websocket, no outbox: a ``JobRunner`` in this process runs N ``true`` jobs,
``--parallel`` at a time, and each job's log is forgotten (as on an ack) once it has ended.
Prints this process's CPU per job (all its threads; the jobs' own processes excluded),
median of ``--rounds``. Steadier than a whole agent when the machine is busy.

With ``--table`` the jobs go through the worker's ``JobTable`` as in the agent: all of a
round scheduled at once, cores for ``--parallel`` of them, the next started as one ends
(in the same pass), each result acked once this coroutine sees it.

    python bench/runner_cpu.py [--jobs 3000] [--parallel 8] [--rounds 5] [--table]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.protocol import AttemptRef, JobResult, JobRun, JobStart, Outcome
from app.worker.attempt import Attempt
from app.worker.config import WorkerConfig
from app.worker.jobs import JobTable
from app.worker.runner import JobRunner

JOB_MCPU = 250


def _config(work_dir: Path, parallel: int) -> WorkerConfig:
    return WorkerConfig(
        port=0,
        host="127.0.0.1",
        name="bench",
        cores_mcpu=parallel * JOB_MCPU,
        work_dir=work_dir,
        heartbeat_s=5.0,
        idle_timeout_s=None,
        orphan_timeout_s=60.0,
    )


async def _round(
    runner: JobRunner, ended: asyncio.Queue[JobResult], n_jobs: int, parallel: int, first_id: int
) -> float:
    """CPU seconds of this process for n_jobs no-op jobs."""
    cpu0 = time.process_time()
    next_id, done = first_id, 0
    in_flight = 0
    while done < n_jobs:
        while in_flight < parallel and next_id < first_id + n_jobs:
            run = _no_op(next_id)
            next_id += 1
            result = runner.start(Attempt(run, JOB_MCPU))
            if result is not None:
                raise SystemExit(f"could not start: {result.error}")
            in_flight += 1
        result = await ended.get()
        if result.outcome is not Outcome.SUCCESS:
            raise SystemExit(f"job failed: {result}")
        runner.forget_log(runner.log_path(result.batch_id, result.job_id, result.attempt))
        in_flight -= 1
        done += 1
    return time.process_time() - cpu0


def _no_op(job_id: int) -> JobRun:
    return JobRun(
        batch_id=1,
        job_id=job_id,
        attempt=1,
        name=f"j{job_id}",
        command="true",
        cores_mcpu=JOB_MCPU,
    )


class _Listener:
    def __init__(self) -> None:
        self.ended: asyncio.Queue[JobResult] = asyncio.Queue()

    def job_started(self, start: JobStart) -> None:
        pass

    def job_ended(self, result: JobResult) -> None:
        self.ended.put_nowait(result)


async def _table_round(table: JobTable, listener: _Listener, n_jobs: int, first_id: int) -> float:
    """CPU seconds of this process for n_jobs no-op jobs through the job table."""
    cpu0 = time.process_time()
    table.schedule(_no_op(job_id) for job_id in range(first_id, first_id + n_jobs))
    for _ in range(n_jobs):
        result = await listener.ended.get()
        if result.outcome is not Outcome.SUCCESS:
            raise SystemExit(f"job failed: {result}")
        table.ack([AttemptRef(result.batch_id, result.job_id, result.attempt)])
    return time.process_time() - cpu0


async def _table_main(config: WorkerConfig, n_jobs: int, rounds: int) -> list[float]:
    listener = _Listener()
    table = JobTable(config, bash_path=shutil.which("bash") or "/bin/bash", listener=listener)
    await _table_round(table, listener, 200, 0)  # warm up: spares, caches
    figures = []
    for i in range(rounds):
        cpu_s = await _table_round(table, listener, n_jobs, 1000 + i * n_jobs)
        figures.append(1e6 * cpu_s / n_jobs)
    await table.wait_all_ended()
    return figures


async def _main(n_jobs: int, parallel: int, rounds: int, *, table: bool) -> list[float]:
    work_dir = Path(tempfile.mkdtemp(prefix="labbatch-runner-"))
    try:
        config = _config(work_dir, parallel)
        for d in (config.scratch_dir, config.logs_dir, config.batches_dir, config.cache_dir):
            d.mkdir(parents=True)
        if table:
            return await _table_main(config, n_jobs, rounds)
        ended: asyncio.Queue[JobResult] = asyncio.Queue()
        runner = JobRunner(
            config,
            bash_path=shutil.which("bash") or "/bin/bash",
            on_end=lambda _attempt, result: ended.put_nowait(result),
        )
        await _round(runner, ended, 200, parallel, 0)  # warm up: spares, caches
        figures = []
        for i in range(rounds):
            cpu_s = await _round(runner, ended, n_jobs, parallel, 1000 + i * n_jobs)
            figures.append(1e6 * cpu_s / n_jobs)
        await runner.wait_cleanups()
        return figures
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--table", action="store_true", help="through the worker's JobTable")
    args = parser.parse_args()
    figures = asyncio.run(_main(args.jobs, args.parallel, args.rounds, table=args.table))
    what = "table" if args.table else "runner"
    print(
        f"{what} CPU per no-op job: median {statistics.median(figures):.0f} us "
        f"({', '.join(f'{f:.0f}' for f in figures)})"
    )


if __name__ == "__main__":
    main()
