"""Validate and store a 100,000-job DAG: prints seconds and peak memory.

Targets: <= 5 s and <= 500 MB for validate + store, on SQLite (the default) or any --db.

    python bench/submit.py [--jobs 100000] [--db URL] [--format yaml|json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.batches import frontend
from app.models.db import open_database
from app.models.spec import load_dag_file


def write_dag(path: Path, n_jobs: int, fmt: str) -> None:
    """A scatter/gather-shaped DAG: each job depends on one or two of the 50 before it."""
    rng = random.Random(7)
    jobs = []
    for i in range(n_jobs):
        job: dict[str, object] = {"name": f"job-{i}", "command": f"echo {i}"}
        if i:
            parents = {rng.randrange(max(0, i - 50), i) for _ in range(rng.randint(1, 2))}
            job["depends_on"] = [f"job-{p}" for p in sorted(parents)]
        if i % 10 == 0:
            job["cpu"] = 0.5
            job["memory"] = "1Gi"
        jobs.append(job)
    doc = {"version": 1, "name": f"bench-{n_jobs}", "jobs": jobs}
    if fmt == "json":
        path.write_text(json.dumps(doc))
    else:
        import yaml

        path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="labbatch-bench-") as tmp:
        os.environ["LABBATCH_HOME"] = tmp
        path = Path(tmp) / f"dag.{args.format}"
        # written by a child process, so its memory does not count toward the peak below
        writer = multiprocessing.get_context("spawn").Process(
            target=write_dag, args=(path, args.jobs, args.format)
        )
        writer.start()
        writer.join()
        db = await open_database(args.db or f"sqlite:///{tmp}/bench.db")
        rss_before = peak_rss_mb()
        start = time.perf_counter()
        spec = load_dag_file(path)
        validated = time.perf_counter()
        batch_id = await frontend.submit_batch(db, spec, user="bench")
        stored = time.perf_counter()
        batch = await frontend.get_batch(db, batch_id)
        await db.close()
    assert batch.n_jobs == args.jobs
    total = stored - start
    size_mb = path.stat().st_size / 1e6 if path.exists() else 0
    print(
        f"{args.jobs} jobs ({args.format}): validate {validated - start:.2f} s + store "
        f"{stored - validated:.2f} s = {total:.2f} s (target <= 5 s)"
    )
    print(
        f"peak RSS {peak_rss_mb():.0f} MB (before: {rss_before:.0f} MB; target <= 500 MB)"
        f"{f'; file {size_mb:.1f} MB' if size_mb else ''}"
    )


if __name__ == "__main__":
    asyncio.run(main())
