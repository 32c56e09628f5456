"""The worker's own CPU per no-op job in the job runner alone: start, reap, report, forget.

No driver, no websocket, no outbox: a ``JobRunner`` in this process runs N ``true`` jobs,
``--parallel`` at a time, and each job's log is forgotten (as on an ack) once it has ended.
Prints this process's CPU per job (all its threads; the jobs' own processes excluded),
median of ``--rounds``. Steadier than a whole agent when the machine is busy.

    python bench/runner_cpu.py [--jobs 3000] [--parallel 8] [--rounds 5]
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

from app.protocol import JobResult, JobRun, Outcome
from app.worker.attempt import Attempt
from app.worker.config import WorkerConfig
from app.worker.runner import JobRunner


def _config(work_dir: Path) -> WorkerConfig:
    return WorkerConfig(
        port=0,
        host="127.0.0.1",
        name="bench",
        cores_mcpu=2000,
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
            run = JobRun(
                batch_id=1,
                job_id=next_id,
                attempt=1,
                name=f"j{next_id}",
                command="true",
                cores_mcpu=250,
            )
            next_id += 1
            result = runner.start(Attempt(run, 250))
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


async def _main(n_jobs: int, parallel: int, rounds: int) -> list[float]:
    work_dir = Path(tempfile.mkdtemp(prefix="labbatch-runner-"))
    try:
        config = _config(work_dir)
        for d in (config.scratch_dir, config.logs_dir, config.batches_dir, config.cache_dir):
            d.mkdir(parents=True)
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
    args = parser.parse_args()
    figures = asyncio.run(_main(args.jobs, args.parallel, args.rounds))
    print(
        f"runner CPU per no-op job: median {statistics.median(figures):.0f} us "
        f"({', '.join(f'{f:.0f}' for f in figures)})"
    )


if __name__ == "__main__":
    main()
