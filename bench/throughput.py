"""Throughput of LabBatch's `labbatch run` code path against the raw process-spawn limit.

Prints jobs/s for N independent no-op jobs (`true`, cpu 0.25) beside the raw limit measured
in the same run (the same N `bash -c true` spawned by one asyncio program with the same
parallelism), and the time per link of a 200-job chain (one job's end to the next's start).

    python bench/throughput.py [--jobs 5000] [--chain 200] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from app.engine.batches import frontend
from app.engine.events import EventBus
from app.engine.runtime import LocalRuntime
from app.models.db import open_database
from app.models.spec import BatchSpec, JobSpec
from app.models.tables import Attempt

JOB_MCPU = 250


async def raw_limit(n: int, parallelism: int) -> float:
    """Processes per second when one asyncio program spawns `bash -c true` directly."""
    sem = asyncio.Semaphore(parallelism)

    async def one() -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", "true", stdin=asyncio.subprocess.DEVNULL
            )
            await proc.wait()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start)


def independent(n: int) -> BatchSpec:
    jobs = tuple(JobSpec(name=f"noop-{i}", command="true", cores_mcpu=JOB_MCPU) for i in range(n))
    return BatchSpec(name=f"bench-{n}", jobs=jobs)


def chain(n: int) -> BatchSpec:
    jobs = tuple(
        JobSpec(
            name=f"link-{i}",
            command="true",
            cores_mcpu=JOB_MCPU,
            depends_on=(f"link-{i - 1}",) if i else (),
        )
        for i in range(n)
    )
    return BatchSpec(name=f"chain-{n}", jobs=jobs)


async def run_batch(runtime: LocalRuntime, spec: BatchSpec) -> tuple[int, float]:
    db = runtime.db
    start = time.perf_counter()
    batch_id = await frontend.submit_batch(db, spec, user="bench")
    runtime.notify_changed()
    done = asyncio.Event()

    def on_event(event: object) -> None:
        if getattr(event, "batch_id", None) == batch_id and getattr(event, "complete", False):
            done.set()

    unsubscribe = runtime.driver.bus.subscribe(on_event)
    try:
        while not (await frontend.get_batch(db, batch_id)).complete:
            try:
                await asyncio.wait_for(done.wait(), 1.0)
            except TimeoutError:
                pass
    finally:
        unsubscribe()
    elapsed = time.perf_counter() - start
    batch = await frontend.get_batch(db, batch_id)
    assert batch.state == "success", batch
    return batch_id, elapsed


async def link_times_ms(runtime: LocalRuntime, batch_id: int) -> list[float]:
    async with runtime.db.connect() as conn:
        rows = list(
            await conn.execute(
                select(Attempt.start_time, Attempt.end_time)
                .where(Attempt.batch_id == batch_id)
                .order_by(Attempt.job_id)
            )
        )
    return [(nxt.start_time - prev.end_time) * 1000 for prev, nxt in itertools.pairwise(rows)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--chain", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw/labbatch rounds")
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    parallelism = cores * 1000 // JOB_MCPU
    with tempfile.TemporaryDirectory(prefix="labbatch-bench-") as home:
        os.environ["LABBATCH_HOME"] = home
        db = await open_database(args.db or f"sqlite:///{home}/bench.db")
        runtime = LocalRuntime(db, bus=EventBus(), n_workers=1, worker_cores_mcpu=cores * 1000)
        await runtime.start()
        try:
            await run_batch(runtime, independent(50))  # warm up: worker up, caches hot
            raws, rates = [], []
            for _ in range(args.rounds):  # alternate, so a noisy moment hits both sides
                raws.append(await raw_limit(args.jobs, parallelism))
                _batch, elapsed = await run_batch(runtime, independent(args.jobs))
                rates.append(args.jobs / elapsed)
            chain_id, chain_s = await run_batch(runtime, chain(args.chain))
            links = await link_times_ms(runtime, chain_id)
        finally:
            await runtime.stop()
            await db.close()
    raw, rate = statistics.median(raws), statistics.median(rates)
    ratios = ", ".join(f"{100 * r / w:.0f}%" for r, w in zip(rates, raws, strict=True))
    print(f"machine: {cores} cores; worker parallelism {parallelism} jobs of 0.25 cores")
    print(
        f"raw limit (asyncio spawns bash -c true): {raw:7.0f} processes/s (median of {args.rounds})"
    )
    print(
        f"labbatch ({args.jobs} no-op jobs):        {rate:7.0f} jobs/s "
        f"= {100 * rate / raw:.0f}% of raw (target >= 70%; rounds: {ratios})"
    )
    print(
        f"chain of {args.chain}: {chain_s:.2f} s; time per link (end -> next start) "
        f"median {statistics.median(links):.2f} ms, p90 "
        f"{statistics.quantiles(links, n=10)[-1]:.2f} ms (target <= 5 ms)"
    )


if __name__ == "__main__":
    asyncio.run(main())
