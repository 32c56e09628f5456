"""Where the CPU of a no-op job goes: cProfile of the driver and of the worker under a stream.

Runs N independent no-op jobs (`true`, cpu 0.25) through `LocalRuntime` (what `labbatch run`
uses) with the driver's process under cProfile, and the worker started as
`python -m cProfile -o FILE -m app.worker ...`; prints each side's top functions by own time
and by cumulative time, and the CPU seconds per job of each process. With ``--split`` nothing
is profiled: it prints the CPU per job of the driver, of the worker itself and of the jobs'
processes (from the kernel's accounting), median of ``--rounds`` batches in one run.

    python bench/profile_jobs.py [--jobs 2000] [--top 25] [--out bench/out/profile] [--cpu-timer]
    python bench/profile_jobs.py --split [--jobs 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import resource
import stat
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.events import EventBus
from app.engine.runtime import LocalRuntime
from app.models.db import Database, open_database
from bench.throughput import JOB_MCPU, independent, run_batch

# The driver's transactions run on the database's writer thread, which a profile of the main
# thread does not see: each one runs under this second profile.
WRITER_PROFILE = cProfile.Profile()


def _profiled_run_here(self: Database, work):  # type: ignore[no-untyped-def]
    WRITER_PROFILE.enable()
    try:
        return _plain_run_here(self, work)
    finally:
        WRITER_PROFILE.disable()


_plain_run_here = Database._run_here


def _profiling_python(out_dir: Path, *, cpu_timer: bool) -> str:
    """A stand-in for the Python that starts workers: the same, under cProfile.

    With ``cpu_timer`` the profile counts the main thread's CPU time, not wall time: a call
    that waits (a pipe write that wakes another process, Popen's read of its exec-error pipe)
    then costs only what the worker itself spends in it.
    """
    wrapper = out_dir / "python-profiled"
    # main() under cProfile, not `-m app.worker`: that entry ends its process with os._exit,
    # before cProfile could write the profile. "$@" is `-m app.worker ARGS`: drop the first two.
    prof = str(out_dir / "worker.prof")
    timer = "time.thread_time" if cpu_timer else "time.perf_counter"
    code = (
        "import cProfile, sys, time; from app.worker.main import main; "
        f"sys.argv = ['app.worker', *sys.argv[3:]]; p = cProfile.Profile({timer}); "
        f"p.runcall(main); p.dump_stats({prof!r})"
    )
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{code}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


async def _profile(
    n_jobs: int, out_dir: Path, *, cpu_timer: bool
) -> tuple[cProfile.Profile, float, float]:
    """Run the batch; the driver's profile, its CPU seconds and the wall seconds."""
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="labbatch-profile-") as home:
        os.environ["LABBATCH_HOME"] = home
        db = await open_database(f"sqlite:///{home}/profile.db")
        runtime = LocalRuntime(db, bus=EventBus(), n_workers=1, worker_cores_mcpu=cores * 1000)
        runtime.cloud.python = _profiling_python(out_dir, cpu_timer=cpu_timer)
        await runtime.start()
        try:
            await run_batch(runtime, independent(50))  # warm up: worker up, caches hot
            profile = cProfile.Profile()
            cpu0 = time.process_time()
            profile.enable()
            Database._run_here = _profiled_run_here  # type: ignore[method-assign]
            _batch, wall_s = await run_batch(runtime, independent(n_jobs))
            profile.disable()
            Database._run_here = _plain_run_here  # type: ignore[method-assign]
            cpu_s = time.process_time() - cpu0
        finally:
            await runtime.stop()  # the worker exits in order and writes its profile
            await db.close()
    return profile, cpu_s, wall_s


def _worker_pids() -> list[int]:
    """This process's children that are worker agents."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"app.worker" in cmdline:
                pids.append(int(pid))
    return pids


def _proc_cpu_s(pid: int) -> tuple[float, float]:
    """(own CPU, reaped children's CPU) of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    tick = os.sysconf("SC_CLK_TCK")
    return (utime + stime) / tick, (cutime + cstime) / tick


async def _split(n_jobs: int, rounds: int) -> list[tuple[float, float, float, float]]:
    """Per round: wall s, and CPU ms per job of the driver, the worker and the jobs."""
    cores = os.cpu_count() or 1
    figures = []
    with tempfile.TemporaryDirectory(prefix="labbatch-split-") as home:
        os.environ["LABBATCH_HOME"] = home
        db = await open_database(f"sqlite:///{home}/split.db")
        runtime = LocalRuntime(db, bus=EventBus(), n_workers=1, worker_cores_mcpu=cores * 1000)
        await runtime.start()
        try:
            await run_batch(runtime, independent(50))  # warm up: worker up, caches hot
            [worker] = _worker_pids()
            for _ in range(rounds):
                driver0, (worker0, jobs0) = time.process_time(), _proc_cpu_s(worker)
                _batch, wall_s = await run_batch(runtime, independent(n_jobs))
                driver1, (worker1, jobs1) = time.process_time(), _proc_cpu_s(worker)
                per_job = [1000 * d / n_jobs for d in (driver1 - driver0, worker1 - worker0)]
                figures.append((wall_s, *per_job, 1000 * (jobs1 - jobs0) / n_jobs))
        finally:
            await runtime.stop()
            await db.close()
    return figures


def _print_split(n_jobs: int, figures: list[tuple[float, float, float, float]]) -> None:
    for wall_s, driver, worker, jobs in figures:
        print(
            f"{n_jobs} jobs in {wall_s:.2f} s: CPU per job driver {driver:.2f} ms, "
            f"worker {worker:.2f} ms, the job's processes {jobs:.2f} ms"
        )
    med = [statistics.median(f[i] for f in figures) for i in range(4)]
    print(
        f"median: {med[0]:.2f} s; driver {med[1]:.2f} + worker {med[2]:.2f} = "
        f"{med[1] + med[2]:.2f} ms per job; jobs {med[3]:.2f} ms"
    )


def _print_top(title: str, stats: pstats.Stats, top: int) -> None:
    print(f"\n=== {title}: by own time ===")
    stats.sort_stats("tottime").print_stats(top)
    print(f"=== {title}: by cumulative time ===")
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default="bench/out/profile", help="where the .prof files go")
    parser.add_argument("--split", action="store_true", help="no profile: CPU per process")
    parser.add_argument(
        "--cpu-timer", action="store_true", help="profile the worker's CPU time, not wall time"
    )
    parser.add_argument("--rounds", type=int, default=3, help="batches with --split (3)")
    args = parser.parse_args()
    if args.split:
        _print_split(args.jobs, asyncio.run(_split(args.jobs, args.rounds)))
        return
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    profile, driver_cpu_s, wall_s = asyncio.run(
        _profile(args.jobs, out_dir, cpu_timer=args.cpu_timer)
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the worker's whole life (start, warm-up and the measured batch) and its jobs' processes
    child_cpu_s = (children.ru_utime - children0.ru_utime) + (
        children.ru_stime - children0.ru_stime
    )
    profile.dump_stats(out_dir / "driver.prof")
    WRITER_PROFILE.dump_stats(out_dir / "driver-db.prof")
    _print_top("driver", pstats.Stats(profile), args.top)
    _print_top("driver's database thread", pstats.Stats(WRITER_PROFILE), args.top)
    worker_prof = out_dir / "worker.prof"
    if worker_prof.exists():
        _print_top("worker", pstats.Stats(str(worker_prof)), args.top)
    else:
        print("\n(the worker wrote no profile: did it exit in order?)")
    print(
        f"\n{args.jobs} no-op jobs of {JOB_MCPU} mcpu in {wall_s:.2f} s; driver CPU "
        f"{1000 * driver_cpu_s / args.jobs:.2f} ms/job (under cProfile); worker and jobs "
        f"(whole life, incl. warm-up) {1000 * child_cpu_s / args.jobs:.2f} ms/job; "
        f"profiles in {out_dir}"
    )


if __name__ == "__main__":
    main()
