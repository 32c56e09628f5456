"""The read-only batch commands: `labbatch status`, `jobs`, `log` and `list`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.cli.common import EXIT_OK, print_json
from app.cli.report import batch_summary_json, job_json, print_jobs, report
from app.engine.batches import file_store, frontend
from app.models.db import Database, open_database


@asynccontextmanager
async def _database(args: argparse.Namespace) -> AsyncIterator[Database]:
    db = await open_database(args.db)
    try:
        yield db
    finally:
        await db.close()


async def cmd_status(args: argparse.Namespace) -> int:
    async with _database(args) as db:
        batch = await frontend.get_batch(db, args.batch)
        jobs = await frontend.list_jobs(db, args.batch)
        staging = await file_store.attempt_staging(db, args.batch)
    report(batch, jobs, as_json=args.json, staging=staging)
    return EXIT_OK


async def cmd_jobs(args: argparse.Namespace) -> int:
    async with _database(args) as db:
        jobs = await frontend.list_jobs(db, args.batch, state=args.state)
    if args.json:
        print_json([job_json(j) for j in jobs])
    else:
        print_jobs(jobs)
    return EXIT_OK


async def cmd_log(args: argparse.Namespace) -> int:
    async with _database(args) as db:
        job = await frontend.find_job(db, args.batch, args.job)
        text = await frontend.job_log(db, args.batch, job.job_id, attempt=args.attempt)
    if not text and job.state not in ("Success", "Failed", "Error", "Cancelled"):
        print(
            f"labbatch: job {job.name} is {job.state}; its log is stored when it ends",
            file=sys.stderr,
        )
    sys.stdout.write(text)
    return EXIT_OK


async def cmd_list(args: argparse.Namespace) -> int:
    async with _database(args) as db:
        batches = await frontend.list_batches(
            db, user=None if args.all else args.user, limit=args.limit
        )
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
