"""Where the CPU of a no-op job goes: cProfile of the driver and of the worker under a stream.

Runs N independent no-op jobs (`true`, cpu 0.25) through `LocalRuntime` (what `labbatch run`
uses) with the driver's process under cProfile, and the worker started as
`python -m cProfile -o FILE -m app.worker ...`; prints each side's top functions by own time
and by cumulative time, and the CPU seconds per job of each process.

    python bench/profile_jobs.py [--jobs 2000] [--top 25] [--out bench/out/profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import resource
import stat
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


def _profiling_python(out_dir: Path) -> str:
    """A stand-in for the Python that starts workers: the same, under cProfile."""
    wrapper = out_dir / "python-profiled"
    # main() under cProfile, not `-m app.worker`: that entry ends its process with os._exit,
    # before cProfile could write the profile. "$@" is `-m app.worker ARGS`: drop the first two.
    prof = str(out_dir / "worker.prof")
    code = (
        "import cProfile, sys; from app.worker.main import main; "
        f"sys.argv = ['app.worker', *sys.argv[3:]]; cProfile.run('main()', {prof!r})"
    )
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{code}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


async def _profile(n_jobs: int, out_dir: Path) -> tuple[cProfile.Profile, float, float]:
    """Run the batch; the driver's profile, its CPU seconds and the wall seconds."""
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="labbatch-profile-") as home:
        os.environ["LABBATCH_HOME"] = home
        db = await open_database(f"sqlite:///{home}/profile.db")
        runtime = LocalRuntime(db, bus=EventBus(), n_workers=1, worker_cores_mcpu=cores * 1000)
        runtime.cloud.python = _profiling_python(out_dir)
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
    args = parser.parse_args()
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    profile, driver_cpu_s, wall_s = asyncio.run(_profile(args.jobs, out_dir))
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
