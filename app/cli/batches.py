"""What each `labbatch` subcommand does (argument parsing lives in app.cli)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.cli.common import EXIT_OK, database, install_stop_signals, worker_cores_mcpu
from app.engine.batches import frontend
from app.engine.events import EventBus
from app.errors import ConfigError
from app.models.spec import load_dag_file


async def cmd_submit(args: argparse.Namespace) -> int:
    spec = load_dag_file(args.file)
    async with database(args) as db:
        batch_id = await frontend.submit_batch(db, spec, user=args.user)
    print(batch_id)
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with database(args) as db:
        batch = await frontend.cancel_batch(db, args.batch, user=args.user)
    print(
        f"batch {batch.id} {batch.name!r}: cancelled "
        f"({batch.n_cancelled} jobs cancelled; running jobs are being stopped)"
    )
    return EXIT_OK


async def cmd_serve(args: argparse.Namespace) -> int:
    from app.engine.runtime import LocalRuntime

    async with database(args) as db:
        if args.workers is not None and args.workers < 1:
            raise ConfigError(f"--workers must be at least 1, not {args.workers}")
        runtime = LocalRuntime(
            db,
            bus=EventBus(),
            n_workers=args.workers,
            worker_cores_mcpu=None if args.cores is None else worker_cores_mcpu(args.cores),
            user=args.user,
        )
        stop = asyncio.Event()
        install_stop_signals(stop)
        print(f"labbatch serve: {db.display}; waiting for the driver lease…", file=sys.stderr)
        try:
            started = asyncio.ensure_future(runtime.start(wait_for_lease=True))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({started, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if started.done():
                started.result()  # raise what went wrong while starting
                print("labbatch serve: driver running; Ctrl-C stops it", file=sys.stderr)
                await stopped
            started.cancel()
        finally:
            await runtime.stop()
    print("labbatch serve: stopped", file=sys.stderr)
    return EXIT_OK


async def cmd_why(args: argparse.Namespace) -> int:
    async with database(args) as db:
        from app.engine.scheduler.why import explain

        print(await explain(db, args.batch, args.job))
    return EXIT_OK


async def cmd_retry(args: argparse.Namespace) -> int:
    async with database(args) as db:
        from app.engine.batches import rerun

        n = await rerun.retry_batch(db, args.batch, user=args.user, failed_only=args.failed)
    if n == 0:
        print(f"batch {args.batch} has nothing to run again")
    else:
        print(
            f"batch {args.batch}: {n} job(s) will run again "
            "(`labbatch serve` or the app runs them; `labbatch status` shows progress)"
        )
    return EXIT_OK
