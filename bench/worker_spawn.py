"""Throughput of a real worker agent against the raw asyncio spawn limit.

Starts ``python -m app.worker`` with 2 cores, plays the driver: schedules 3,000 ``true`` jobs
of 250 mcpu, topping the worker up as Completed frames arrive (and acking them), so the worker
is always full. Then measures 3,000 ``bash -c true`` through asyncio.create_subprocess_exec,
8 in parallel, on the same machine in the same run.

    python bench/worker_spawn.py [--jobs 3000] [--queue-factor 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from app.protocol import (
    TOKEN_ENV,
    WS_PATH,
    Ack,
    AttemptRef,
    Completed,
    Hello,
    JobRun,
    Outcome,
    Schedule,
    Shutdown,
    bearer,
    decode,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CORES = 2
JOB_MCPU = 250
READY_PREFIX = "LABBATCH-WORKER READY port="


async def start_agent(work_dir: Path, token: str) -> tuple[asyncio.subprocess.Process, int]:
    """Start an agent with CORES cores; return it and its port."""
    env = {**os.environ, TOKEN_ENV: token, "PYTHONPATH": str(REPO_ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.worker",
        *("--port", "0", "--name", "bench", "--cores", str(CORES)),
        *("--work-dir", str(work_dir)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
    if not line.startswith(READY_PREFIX):
        raise SystemExit(f"worker did not start: {line!r}")
    return proc, int(line.removeprefix(READY_PREFIX))


def true_job(job_id: int) -> JobRun:
    return JobRun(
        batch_id=1, job_id=job_id, attempt=1, name=f"j{job_id}", command="true", cores_mcpu=250
    )


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(
    port: int, token: str, n_jobs: int, queue_factor: float, *, agent_pid: int
) -> tuple[float, int, float]:
    """Run n_jobs through the agent; return (seconds, Completed frames, agent CPU seconds)."""
    in_flight_max = int(CORES * 1000 / JOB_MCPU * queue_factor)
    url = f"http://127.0.0.1:{port}{WS_PATH}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"Authorization": bearer(token)}) as ws,
    ):
        assert isinstance(decode((await ws.receive()).data), Hello)
        next_id, done, n_frames, failures = 0, 0, 0, 0
        started, cpu_before_s = time.perf_counter(), cpu_s(agent_pid)
        while done < n_jobs:
            n_new = min(in_flight_max - (next_id - done), n_jobs - next_id)
            if n_new > 0:
                runs = [true_job(i) for i in range(next_id, next_id + n_new)]
                await ws.send_str(Schedule(jobs=runs).to_json())
                next_id += n_new
            message = decode((await asyncio.wait_for(ws.receive(), 30)).data)
            if isinstance(message, Completed):
                n_frames += 1
                done += len(message.jobs)
                failures += sum(r.outcome is not Outcome.SUCCESS for r in message.jobs)
                refs = [AttemptRef(r.batch_id, r.job_id, r.attempt) for r in message.jobs]
                await ws.send_str(Ack(attempts=refs).to_json())
        elapsed_s = time.perf_counter() - started
        agent_cpu_s = cpu_s(agent_pid) - cpu_before_s
        await ws.send_str(Shutdown(reason="bench done").to_json())
    if failures:
        raise SystemExit(f"{failures} jobs did not succeed")
    return elapsed_s, n_frames, agent_cpu_s


async def raw_asyncio(n_jobs: int, parallel: int = 8) -> float:
    """Seconds for n_jobs `bash -c true` through asyncio subprocesses, `parallel` at a time."""
    gate = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec("bash", "-c", "true")
            await proc.wait()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n_jobs)))
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--queue-factor", type=float, default=1.0, help="in flight / slots")
    args = parser.parse_args()
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="labbatch-bench-") as tmp:
        proc, port = await start_agent(Path(tmp), token)
        try:
            worker_s, n_frames, agent_cpu_s = await drive(
                port, token, args.jobs, args.queue_factor, agent_pid=proc.pid
            )
        finally:
            if proc.returncode is None:
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    raw_s = await raw_asyncio(args.jobs)
    worker_rate, raw_rate = args.jobs / worker_s, args.jobs / raw_s
    print(f"cores={CORES} jobs={args.jobs} job_mcpu={JOB_MCPU} queue_factor={args.queue_factor}")
    print(f"worker agent    : {worker_rate:7.0f} jobs/s ({n_frames} Completed frames)")
    print(f"agent CPU / job : {agent_cpu_s / args.jobs * 1e6:7.0f} us (its own loop, not the jobs)")
    print(f"raw asyncio x8  : {raw_rate:7.0f} jobs/s (bash -c true)")
    print(f"worker / raw    : {worker_rate / raw_rate:7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
