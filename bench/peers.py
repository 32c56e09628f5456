"""LabBatch against its peer as a user meets both: whole processes started from the shell.

Alternating in one run (so a noisy moment hits every side): `labbatch run` of N independent
no-op jobs (`true`, cpu 0.25), hailtop.batch's LocalBackend on the same N jobs (from a venv
this script makes under bench/out/ with `pip install hail`; if that fails it says so and goes
on), and two raw spawn limits (one Python process spawning the same N jobs with the worker's
parallelism, as `bash -c true` and as `true` exec'd directly, which is how LabBatch's worker
now runs a simple command). Prints each median, the ratios, and the CPU a no-op job costs. Then a
chain of 200 jobs (time per link), a 100-job DAG of `sleep 0.1` jobs on 2 workers, and the
start-up figures: `labbatch --help`, `labbatch status ID` and a one-job `labbatch run`.

    python bench/peers.py [--jobs 1000] [--rounds 5] [--no-hail]

Every figure is a whole process: wall from fork to reap, CPU from the kernel's accounting of
the process and everything it waited for (its workers and their jobs).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
HAIL_VENV = OUT / "hail-venv"
JOB_CPU = 0.25
LABBATCH = [sys.executable, "-m", "app"]  # what the `labbatch` script runs

RAW_SPAWN = """
import asyncio, sys
n, parallelism, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
async def main():
    sem = asyncio.Semaphore(parallelism)
    async def one():
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL)
            await proc.wait()
    await asyncio.gather(*(one() for _ in range(n)))
asyncio.run(main())
"""

HAIL_NOOP = """
import sys
import hailtop.batch as hb
n = int(sys.argv[1])
b = hb.Batch(backend=hb.LocalBackend(), name=f"noop-{n}")
for i in range(n):
    b.new_job(name=f"noop-{i}").command("true")
b.run(verbose=False)
"""


@dataclass(frozen=True)
class Run:
    """One whole process: wall seconds, CPU seconds of it and all it waited for, exit code."""

    wall_s: float
    cpu_s: float
    code: int


def timed(argv: list[str], env: dict[str, str], *, timeout_s: float = 600.0) -> Run:
    """Run ``argv`` to its end; its output is thrown away."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = start + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.002)
    wall_s = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    code = proc.returncode
    if code != 0 and proc.stderr is not None:
        print(f"  ! {' '.join(argv[:4])} … exit {code}: {proc.stderr.read()[-400:]!r}")
    if proc.stderr is not None:
        proc.stderr.close()
    return Run(wall_s, usage.ru_utime + usage.ru_stime, code)


def dag_file(path: Path, jobs: list[dict[str, object]], name: str) -> Path:
    path.write_text(json.dumps({"version": 1, "name": name, "jobs": jobs}))
    return path


def noop_jobs(n: int) -> list[dict[str, object]]:
    return [{"name": f"noop-{i}", "command": "true", "cpu": JOB_CPU} for i in range(n)]


def chain_jobs(n: int) -> list[dict[str, object]]:
    return [
        {"name": f"link-{i}", "command": "true", "cpu": JOB_CPU}
        | ({"depends_on": [f"link-{i - 1}"]} if i else {})
        for i in range(n)
    ]


def sleep_dag_jobs(layers: int, width: int) -> list[dict[str, object]]:
    """``layers`` rows of ``width`` `sleep 0.1` jobs; each needs two jobs of the row above."""
    jobs: list[dict[str, object]] = []
    for layer in range(layers):
        for i in range(width):
            job: dict[str, object] = {
                "name": f"s{layer}-{i}",
                "command": "sleep 0.1",
                "cpu": JOB_CPU,
            }
            if layer:
                job["depends_on"] = sorted({f"s{layer - 1}-{i}", f"s{layer - 1}-{(i + 1) % width}"})
            jobs.append(job)
    return jobs


def hail_python(log: list[str]) -> str | None:
    """The venv's Python with hailtop.batch, made on first use; None if it cannot be had."""
    python = HAIL_VENV / "bin" / "python"
    check = [str(python), "-c", "import hailtop.batch"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python)
    print("making a venv with hail (pip install hail) under bench/out/ …", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(HAIL_VENV)],
        [str(python), "-m", "pip", "install", "-q", "hail"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            log.append(f"hail not measured: `{' '.join(step[-3:])}` failed: {done.stderr[-300:]}")
            return None
    if subprocess.run(check, capture_output=True).returncode != 0:
        log.append("hail not measured: hailtop.batch does not import in its venv")
        return None
    return str(python)


def job_process_cpu(n: int) -> float:
    """CPU seconds one `true` process costs on its own (each reaped with its rusage)."""
    true = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
    total = 0.0
    for _ in range(n):
        pid = os.posix_spawn(true, ["true"], {})
        _pid, _status, usage = os.wait4(pid, 0)
        total += usage.ru_utime + usage.ru_stime
    return total / n


def median(runs: list[Run], field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs)


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms"


def attempt_times(db_path: Path, batch_name: str) -> list[tuple[float, float]]:
    """(start, end) of each job's attempt in the newest batch of that name, in job order."""
    with sqlite3.connect(db_path) as conn:
        (batch_id,) = conn.execute(
            "SELECT max(id) FROM batches WHERE name = ?", (batch_name,)
        ).fetchone()
        rows = conn.execute(
            "SELECT start_time, end_time FROM attempts WHERE batch_id = ? ORDER BY job_id",
            (batch_id,),
        ).fetchall()
    return [(float(s), float(e)) for s, e in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="no-op jobs per run (1000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    parser.add_argument("--chain", type=int, default=200, help="links in the chain (200)")
    parser.add_argument("--no-hail", action="store_true", help="skip hailtop.batch")
    args = parser.parse_args()
    notes: list[str] = []
    cores = os.cpu_count() or 1
    parallelism = int(cores / JOB_CPU)  # what one worker with every core runs at once
    OUT.mkdir(parents=True, exist_ok=True)
    hail = None if args.no_hail else hail_python(notes)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="peers-", dir=OUT) as tmp:
        home = Path(tmp)
        db_path = home / "bench.db"
        env = dict(os.environ, LABBATCH_HOME=str(home), LABBATCH_DB=f"sqlite:///{db_path}")
        env["PYTHONPATH"] = str(ROOT)
        noop_n = dag_file(home / "noop-n.json", noop_jobs(args.jobs), f"noop-{args.jobs}")
        noop_1 = dag_file(home / "noop-1.json", noop_jobs(1), "noop-1")
        chain = dag_file(home / "chain.json", chain_jobs(args.chain), "chain")
        dag = dag_file(home / "dag.json", sleep_dag_jobs(10, 10), "sleep-dag")
        run_n = [*LABBATCH, "run", str(noop_n)]
        raw = [sys.executable, "-c", RAW_SPAWN, str(args.jobs), str(parallelism)]
        raw_bash, raw_exec = [*raw, "bash", "-c", "true"], [*raw, "true"]
        hail_cmd = [hail, "-c", HAIL_NOOP, str(args.jobs)] if hail else None
        timed([*LABBATCH, "run", str(noop_1)], env)  # warm-up: the database exists, caches hot

        sides: dict[str, list[Run]] = {"labbatch": [], "raw": [], "raw-exec": [], "hail": []}
        for r in range(args.rounds):
            order = [
                ("labbatch", run_n),
                ("raw", raw_bash),
                ("raw-exec", raw_exec),
                ("hail", hail_cmd),
            ]
            order = order[r % 4 :] + order[: r % 4]  # each side goes first in turn
            for side, argv in order:
                if argv is not None:
                    sides[side].append(timed(argv, env))
            print(
                f"round {r + 1}/{args.rounds}: "
                + ", ".join(f"{s} {v[-1].wall_s:.2f} s" for s, v in sides.items() if v),
                flush=True,
            )

        one = [timed([*LABBATCH, "run", str(noop_1)], env) for _ in range(args.rounds)]
        helps = [timed([*LABBATCH, "--help"], env) for _ in range(args.rounds)]
        status = [timed([*LABBATCH, "status", "1"], env) for _ in range(args.rounds)]
        chain_run = timed([*LABBATCH, "run", str(chain)], env)
        links = attempt_times(db_path, "chain")
        gaps = [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(links)]
        dag_run = timed([*LABBATCH, "run", "--workers", "2", "--cores", "1", str(dag)], env)
    load_after = os.getloadavg()

    lab, rawr, hailr = sides["labbatch"], sides["raw"], sides["hail"]
    rawx = sides["raw-exec"]
    n = args.jobs
    print()
    print(
        f"date: {datetime.datetime.now().isoformat(timespec='minutes')}; machine: "
        f"{platform.node()}, {cores} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (other work shares this machine)"
    )
    print(f"{n} no-op jobs, whole processes, median of {len(lab)} alternating rounds:")
    print(
        f"  labbatch run           {median(lab, 'wall_s'):6.2f} s wall  "
        f"{median(lab, 'cpu_s'):6.2f} s CPU"
    )
    print(
        f"  raw spawn limit        {median(rawr, 'wall_s'):6.2f} s wall  "
        f"{median(rawr, 'cpu_s'):6.2f} s CPU  (bash -c true, {parallelism} at once)"
    )
    print(
        f"  raw spawn limit, exec  {median(rawx, 'wall_s'):6.2f} s wall  "
        f"{median(rawx, 'cpu_s'):6.2f} s CPU  (true exec'd directly, as the worker does)"
    )
    if hailr:
        print(
            f"  hailtop LocalBackend   {median(hailr, 'wall_s'):6.2f} s wall  "
            f"{median(hailr, 'cpu_s'):6.2f} s CPU"
        )
        speedups = [h.wall_s / lab_.wall_s for h, lab_ in zip(hailr, lab, strict=False)]
        print(
            f"  labbatch vs hailtop: {statistics.median(speedups):.2f}x faster "
            f"(rounds {', '.join(f'{s:.2f}' for s in speedups)}; target >= 3x)"
        )
    for label, raw_runs in (("bash -c", rawr), ("exec", rawx)):
        of_raw = [rw.wall_s / lab_.wall_s for rw, lab_ in zip(raw_runs, lab, strict=False)]
        print(
            f"  labbatch / raw limit ({label}): {100 * statistics.median(of_raw):.0f}% "
            f"(rounds {', '.join(f'{100 * x:.0f}%' for x in of_raw)}; target >= 70%)"
        )
    one_cpu = median(one, "cpu_s")
    per_job = (median(lab, "cpu_s") - one_cpu) / (n - 1)
    print(f"  CPU per no-op job (labbatch N minus one-job run, / N-1): {1000 * per_job:.2f} ms")
    own = job_process_cpu(n)
    print(
        f"    less the job's own process (`true`, as the kernel accounts each one) "
        f"~{1000 * own:.2f} ms: driver + worker {1000 * (per_job - own):.2f} ms "
        f"(target <= 1.5 ms)"
    )
    print("start-up, median of", len(helps))
    print(
        f"  labbatch --help        {ms(median(helps, 'wall_s')):>8} wall "
        f"{ms(median(helps, 'cpu_s')):>8} CPU (target <= 150 ms)"
    )
    print(
        f"  labbatch status ID     {ms(median(status, 'wall_s')):>8} wall "
        f"{ms(median(status, 'cpu_s')):>8} CPU (target <= 350 ms)"
    )
    print(
        f"  one-job labbatch run   {ms(median(one, 'wall_s')):>8} wall "
        f"{ms(median(one, 'cpu_s')):>8} CPU (target <= 600 ms)"
    )
    if gaps:
        print(
            f"chain of {args.chain}: {chain_run.wall_s:.2f} s whole process; per link (end -> "
            f"next start) median {1000 * statistics.median(gaps):.2f} ms, p90 "
            f"{1000 * statistics.quantiles(gaps, n=10)[-1]:.2f} ms (target <= 5 ms)"
        )
    print(
        f"100-job DAG of sleep 0.1 (10 rows of 10) on 2 workers: {dag_run.wall_s:.2f} s whole "
        f"process (its critical path is 1.0 s of sleeping; 8 slots need >= 1.3 s)"
    )
    for note in notes:
        print("note:", note)


if __name__ == "__main__":
    main()
