"""What staging files costs: jobs that read a large input and write an output, run with
LabBatch's files (inputs staged, outputs saved to scratch) against the same jobs reading and
writing plain paths, and against plain `cp` of the same bytes, in the same run.

Each job reads its whole input (`cat > /dev/null`) and writes the output's bytes from it. The
full size of issue 16 is `--jobs 200 --input-mb 200 --output-mb 10` (about 2 minutes and 4 GB
of disk); the default is small enough to run in a minute.

    python bench/files.py [--jobs 40] [--input-mb 50] [--output-mb 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.batches import frontend
from app.engine.events import EventBus
from app.engine.runtime import LocalRuntime
from app.models.db import Database, open_database
from app.models.spec import parse_dag_text
from app.models.tables import Attempt

COMMAND = 'cat "$data" > /dev/null && head -c {out_bytes} "$data" > "$result"'


def with_files(n_jobs: int, out_bytes: int) -> str:
    command = COMMAND.format(out_bytes=out_bytes)
    jobs = "\n".join(
        f"  - {{name: j{i}, inputs: [data], outputs: {{result: .bin}}, command: '{command}'}}"
        for i in range(n_jobs)
    )
    head = "version: 1\nname: files\ninputs: {data: input.bin}\ndefaults: {cpu: 1}\n"
    return f"{head}jobs:\n{jobs}\n"


def plain(n_jobs: int, out_bytes: int, work: Path) -> str:
    command = COMMAND.format(out_bytes=out_bytes)
    jobs = "\n".join(
        f"  - {{name: j{i}, env: {{data: '{work}/input.bin', result: '{work}/plain/{i}.bin'}}, "
        f"command: '{command}'}}"
        for i in range(n_jobs)
    )
    return f"version: 1\nname: plain\ndefaults: {{cpu: 1}}\njobs:\n{jobs}\n"


async def run(runtime: LocalRuntime, text: str, base: Path) -> tuple[int, float]:
    spec = parse_dag_text(text, source=str(base / "bench.yaml"))
    start = time.perf_counter()
    batch_id = await frontend.submit_batch(runtime.db, spec, user="bench")
    runtime.notify_changed()
    done = asyncio.Event()

    def on_event(event: object) -> None:
        if getattr(event, "batch_id", None) == batch_id and getattr(event, "complete", False):
            done.set()

    unsubscribe = runtime.driver.bus.subscribe(on_event)
    try:
        while not (batch := await frontend.get_batch(runtime.db, batch_id)).complete:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 1.0)
    finally:
        unsubscribe()
    elapsed = time.perf_counter() - start
    assert batch.state == "success", batch
    return batch_id, elapsed


async def staging_totals(db: Database, batch_id: int) -> dict[str, float]:
    """The staging figures summed over a batch's attempts, and their summed run time."""
    query = select(Attempt.staging, Attempt.start_time, Attempt.end_time)
    async with db.connect() as conn:
        rows = await conn.execute(query.where(Attempt.batch_id == batch_id))
        totals: dict[str, float] = {"attempt_s": 0.0}
        for staging, start, end in rows:
            totals["attempt_s"] += end - start
            for key, value in (staging or {}).items():
                totals[key] = totals.get(key, 0) + value
    return totals


def plain_cp(n_jobs: int, work: Path, out_bytes: int, parallel: int) -> float:
    """Copy each job's input in and its output out with cp, `parallel` at a time."""
    (work / "cp").mkdir()
    (work / "one-output.bin").write_bytes(os.urandom(1 << 16) * (out_bytes >> 16 or 1))
    script = (
        'cp "$1/input.bin" "$1/cp/in-$2" && cp "$1/one-output.bin" "$1/cp/out-$2" '
        '&& rm "$1/cp/in-$2" "$1/cp/out-$2"'
    )
    start = time.perf_counter()
    running: list[subprocess.Popen[bytes]] = []
    for i in range(n_jobs):
        if len(running) >= parallel:
            running.pop(0).wait()
        running.append(subprocess.Popen(["bash", "-c", script, "cp", str(work), str(i)]))
    for proc in running:
        proc.wait()
    return time.perf_counter() - start


def size(n_bytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{int(n_bytes)} B"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--input-mb", type=int, default=50)
    parser.add_argument("--output-mb", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating plain/files rounds")
    parser.add_argument("--dir", help="where to work (default: a temporary directory)")
    args = parser.parse_args()
    out_bytes = args.output_mb << 20
    with tempfile.TemporaryDirectory(prefix="labbatch-files-", dir=args.dir) as tmp:
        work = Path(tmp)
        os.environ["LABBATCH_HOME"] = str(work / "home")
        (work / "plain").mkdir()
        with (work / "input.bin").open("wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.input_mb):
                f.write(block)
        db = await open_database(f"sqlite:///{work}/bench.db")
        runtime = LocalRuntime(db, bus=EventBus(), n_workers=args.workers, worker_cores_mcpu=1000)
        await runtime.start()
        try:
            await run(runtime, plain(args.workers, 1, work), work)  # warm up: workers up
            plain_times, files_times, plain_job_s, files_job_s = [], [], [], []
            for _ in range(args.rounds):  # alternate, so a noisy moment hits both sides
                plain_id, plain_s = await run(runtime, plain(args.jobs, out_bytes, work), work)
                plain_times.append(plain_s)
                plain_job_s.append((await staging_totals(db, plain_id))["attempt_s"])
                files_id, files_s = await run(runtime, with_files(args.jobs, out_bytes), work)
                files_times.append(files_s)
                totals = await staging_totals(db, files_id)
                files_job_s.append(totals["attempt_s"])
        finally:
            await runtime.stop()
            await db.close()
        cp_s = plain_cp(args.jobs, work, out_bytes, args.workers)
    n_bytes = args.jobs * ((args.input_mb << 20) + out_bytes)
    plain_s, files_s = statistics.median(plain_times), statistics.median(files_times)
    print(
        f"{args.jobs} jobs, each reading a {args.input_mb} MiB input and writing "
        f"{args.output_mb} MiB, on {args.workers} local workers x 1 core"
    )
    print(f"jobs reading and writing plain paths:  {plain_s:7.2f} s (median of {args.rounds})")
    print(
        f"the same jobs with staged files:       {files_s:7.2f} s "
        f"({100 * (files_s - plain_s) / plain_s:+.1f} %; target <= +10 %)"
    )
    print(
        f"  attempts' time summed (median): plain {statistics.median(plain_job_s):.2f} s, "
        f"with files {statistics.median(files_job_s):.2f} s"
    )
    print(
        f"  staging, summed over the attempts of the last round: in {totals.get('in_s', 0):.2f} s, "
        f"out {totals.get('out_s', 0):.2f} s = "
        f"{100 * (totals.get('in_s', 0) + totals.get('out_s', 0)) / totals['attempt_s']:.1f} % "
        "of their attempts' time"
    )
    print(
        f"  bytes linked {size(totals.get('linked_bytes', 0))}, "
        f"copied {size(totals.get('copied_bytes', 0))} (target: 0 copied)"
    )
    print(f"plain cp of the same {size(n_bytes)} ({args.workers} at a time): {cp_s:7.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
