"""The read-only batch commands: `labbatch status`, `jobs`, `log` and `list`.

They read through app.engine.batches.reads, which on a SQLite file loads no SQLAlchemy: these
commands start in a fraction of the time the others take (tests/test_startup.py holds that).
"""

from __future__ import annotations

import argparse
import sys
import time

from app.cli.common import EXIT_OK, print_json
from app.cli.report import batch_summary_json, job_json, print_jobs, report
from app.engine.batches.reads import open_reads


async def cmd_status(args: argparse.Namespace) -> int:
    async with open_reads(args.db) as reads:
        batch = await reads.get_batch(args.batch)
        jobs = await reads.list_jobs(args.batch)
        staging = await reads.attempt_staging(args.batch)
    report(batch, jobs, as_json=args.json, staging=staging)
    return EXIT_OK


async def cmd_jobs(args: argparse.Namespace) -> int:
    async with open_reads(args.db) as reads:
        jobs = await reads.list_jobs(args.batch, state=args.state)
    if args.json:
        print_json([job_json(j) for j in jobs])
    else:
        print_jobs(jobs)
    return EXIT_OK


async def cmd_log(args: argparse.Namespace) -> int:
    async with open_reads(args.db) as reads:
        job = await reads.find_job(args.batch, args.job)
        text = await reads.job_log(args.batch, job.job_id, attempt=args.attempt)
    if not text and job.state not in ("Success", "Failed", "Error", "Cancelled"):
        print(
            f"labbatch: job {job.name} is {job.state}; its log is stored when it ends",
            file=sys.stderr,
        )
    sys.stdout.write(text)
    return EXIT_OK


async def cmd_list(args: argparse.Namespace) -> int:
    async with open_reads(args.db) as reads:
        batches = await reads.list_batches(user=None if args.all else args.user, limit=args.limit)
    if args.json:
        print_json([batch_summary_json(b) for b in batches])
        return EXIT_OK
    for b in batches:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(b.time_created))
        print(
            f"{b.id:>6}  {b.name[:30]:<30}  {b.state:<9}  {b.n_completed:>6}/{b.n_jobs:<6}  "
            f"{b.user:<12}  {when}"
        )
    return EXIT_OK
