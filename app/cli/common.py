"""What every command module shares: exit codes, JSON printing, stop signals."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from app.errors import ConfigError

if TYPE_CHECKING:
    import argparse
    import asyncio

    from app.models.db import Database

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


# True once main() runs as the program (the `labbatch` process), not called by other code
AS_PROGRAM = False


@contextlib.asynccontextmanager
async def database(args: argparse.Namespace) -> AsyncIterator[Database]:
    """The database ``--db`` names (loaded here: `labbatch run` loads it late), closed after."""
    from app.models.db import open_database

    db = await open_database(args.db)
    try:
        yield db
    finally:
        # The `labbatch` process ends right after its command (os._exit): every transaction
        # is committed by now, and closing SQLite would only checkpoint its WAL into the main
        # file, which the next process (or SQLite's auto-checkpoint) does as well. PostgreSQL
        # is told goodbye: the server logs a client that just vanishes.
        if not (AS_PROGRAM and db.is_sqlite):
            await db.close()


@contextlib.contextmanager
def loading_modules() -> Iterator[None]:
    """Load modules without the garbage collector, then freeze what they made.

    Loading makes no garbage worth collecting, yet the collector's passes over the growing
    heap cost about a tenth of a command's import time; frozen, the loaded modules' objects
    are skipped by every later collection too. Only in the `labbatch` process: freezing a
    caller's heap (a test's, with its engine running) keeps its garbage, unclosed sessions
    and subprocess transports included, until the interpreter exits.
    """
    if not AS_PROGRAM:
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM (and SIGINT) set ``stop`` so the driver shuts down cleanly."""
    import asyncio  # not at the top: `labbatch --help` loads this module and no asyncio

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def worker_cores_mcpu(cores: float | None) -> int:
    """A worker's cores from `--cores`: every core of this machine without it."""
    if cores is None:
        return (os.cpu_count() or 1) * 1000
    if cores <= 0:
        raise ConfigError(f"--cores must be positive, not {cores:g}")
    return int(cores * 1000)
