"""`labbatch run`: store a batch, drive it with local workers, wait for it and report."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING

from app.cli.common import EXIT_FAILED, EXIT_OK, database, loading_modules, worker_cores_mcpu
from app.cli.report import needs_job_rows, report
from app.errors import ConfigError, UserError
from app.models.units import format_duration

# Loaded only after the spare worker has started (see cmd_run): the engine, SQLAlchemy and the
# DAG file's parser take most of this command's start-up.
if TYPE_CHECKING:
    from app.clouds.local import SpareWorker
    from app.engine.events import EventBus
    from app.engine.records import BatchInfo
    from app.engine.runtime import LocalRuntime
    from app.models.db import Database
    from app.models.spec import BatchSpec


# The batch is stored once the started driver has sized its pools (a few milliseconds), or
# after this long at most (a first sizing slowed by a cloud pool's retried delete).
FIRST_SIZING_WAIT_S = 1.0


async def cmd_run(args: argparse.Namespace) -> int:
    if args.file.endswith(".py"):  # a hailtop.batch-style script: its b.run() runs the batch
        return await asyncio.to_thread(_run_script, args)
    if args.script_args:
        raise ConfigError(f"unexpected arguments after {args.file}: {' '.join(args.script_args)}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {args.workers}")
    cores_mcpu = worker_cores_mcpu(args.cores)
    # First thing, a worker process starts loading while this one loads the engine, opens the
    # database and stores the batch; the local pool's first worker is that process.
    from app.clouds.local import discard_spare, start_spare
    from app.models.paths import work_dir

    spare: SpareWorker | None = await start_spare(work_dir() / "workers")
    try:
        with loading_modules():
            from app.engine.events import EventBus
            from app.engine.runtime import LocalRuntime  # the driver, SQLAlchemy and aiohttp
            from app.models.spec import load_dag_file

        spec = load_dag_file(args.file)
        async with database(args) as db:
            runtime = LocalRuntime(
                db,
                bus=EventBus(),
                n_workers=args.workers,
                worker_cores_mcpu=cores_mcpu,
                user=args.user,
                spare=spare,
            )
            spare = None  # the runtime's local cloud takes it, or ends it when it stops
            return await _drive(args, db, runtime, spec)
    finally:
        if spare is not None:
            await discard_spare(spare)


async def _drive(
    args: argparse.Namespace, db: Database, runtime: LocalRuntime, spec: BatchSpec
) -> int:
    """Start the driver, store the batch, wait for it, report it."""
    from app.engine.batches import file_store, frontend

    # The driver starts and its first worker is on its way before the batch is stored: the
    # batch's insert holds the database's one writer, which the worker's creation also needs,
    # and that worker (the spare) then connects while the jobs go in.
    try:
        started = await runtime.start()
        if started:
            await runtime.first_sizing(timeout_s=FIRST_SIZING_WAIT_S)
        batch_id = await frontend.submit_batch(db, spec, user=args.user)
    except BaseException:
        await runtime.stop()
        raise
    if not started:
        await runtime.cloud.drop_spare()  # the other process runs the jobs on its own workers
        holder = await runtime.lease_holder()
        print(
            f"labbatch: the driver runs in another process ({holder}); waiting for it "
            f"to run batch {batch_id}",
            file=sys.stderr,
        )
    runtime.notify_changed()
    try:
        batch = await wait_for_batch(
            db, runtime.driver.bus, batch_id, progress=sys.stderr.isatty(), runtime=runtime
        )
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):
            print(
                f"\nlabbatch: interrupted: batch {batch_id} is left unfinished; "
                f"`labbatch serve` carries it on, `labbatch cancel {batch_id}` stops it",
                file=sys.stderr,
            )
        await runtime.stop()
        raise
    # The report's reads overlap the stop, which mostly waits for the worker to exit.
    stopping = asyncio.ensure_future(runtime.stop())
    try:
        if needs_job_rows(batch, as_json=args.json):
            jobs = await frontend.list_jobs(db, batch_id)
            staging = await file_store.attempt_staging(db, batch_id)
        else:  # a large batch that all succeeded: the table would list no job
            jobs, staging = [], {}
    finally:
        await stopping
    report(batch, jobs, as_json=args.json, staging=staging)
    return EXIT_OK if batch.state == "success" else EXIT_FAILED


def _run_script(args: argparse.Namespace) -> int:
    from app.models.importers.hail_script import run_script  # only scripts need it

    options = [f"--workers={args.workers}", f"--user={args.user}"]
    options += [f"--cores={args.cores}"] if args.cores is not None else []
    options += [f"--db={args.db}"] if args.db else []
    options += ["--json"] if args.json else []
    options += ["--verbose"] if args.verbose else []
    return run_script(args.file, args.script_args, options)


async def wait_for_batch(
    db: Database,
    bus: EventBus,
    batch_id: int,
    *,
    progress: bool = False,
    runtime: LocalRuntime | None = None,
) -> BatchInfo:
    """Wait until a batch is complete; events wake us early, a poll covers other drivers."""
    from app.engine.batches import frontend
    from app.engine.events import BatchChanged

    changed = asyncio.Event()
    completed = asyncio.Event()  # ends the pause between redraws: the end is shown at once

    def on_event(event: object) -> None:
        if isinstance(event, BatchChanged) and event.batch_id == batch_id:
            changed.set()
            if event.complete:
                completed.set()

    unsubscribe = bus.subscribe(on_event)
    last_line = ""
    try:
        while True:
            batch = await frontend.get_batch(db, batch_id)
            if progress:
                line = _progress_line(batch)
                if line != last_line:
                    sys.stderr.write("\r" + line.ljust(len(last_line)))
                    sys.stderr.flush()
                    last_line = line
            if batch.complete:
                if progress:
                    sys.stderr.write("\n")
                return batch
            if runtime is not None and runtime.driver.problem:
                raise UserError(f"{runtime.driver.problem}; batch {batch_id} is left unfinished")
            if runtime is not None and not runtime.driver.has_lease and await runtime.start():
                # the other driver is gone (killed, its machine asleep): its lease lapsed
                runtime.notify_changed()
                print(
                    f"labbatch: the other driver stopped renewing its lease; this process "
                    f"drives batch {batch_id} now",
                    file=sys.stderr,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await changed.wait()
            changed.clear()
            if progress:  # at most ~10 redraws a second
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await completed.wait()
            else:
                await asyncio.sleep(0)
    finally:
        unsubscribe()


def _progress_line(batch: BatchInfo) -> str:
    extra = []
    if batch.n_failed:
        extra.append(f"{batch.n_failed} failed")
    if batch.n_cancelled:
        extra.append(f"{batch.n_cancelled} cancelled")
    tail = f" ({', '.join(extra)})" if extra else ""
    return (
        f"batch {batch.id} {batch.name}: {batch.n_completed}/{batch.n_jobs} jobs done{tail}"
        f" — {format_duration(batch.duration_s)}"
    )
