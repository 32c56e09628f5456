"""The `labbatch` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import logging.handlers
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app import __version__
from app.errors import LabBatchError, UserError
from app.models.spec import DagFileError

log = logging.getLogger("labbatch.cli")
EXIT_OK = 0
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
USER_ENV = "LABBATCH_USER"


def default_user() -> str:
    return os.environ.get(USER_ENV) or getpass.getuser()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="URL",
        help="database: sqlite:///path.db or postgresql://user@host/db "
        "(default: $LABBATCH_DB or a SQLite file in the user data dir)",
    )
    common.add_argument("--user", help="who you are (default: $LABBATCH_USER or your login)")
    common.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")

    parser = argparse.ArgumentParser(
        prog="labbatch",
        description="Run job DAGs on a fair-shared pool of workers, and watch them live. "
        "With no command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"labbatch {__version__}")
    parser.add_argument(
        "--db",
        dest="gui_db",
        metavar="URL",
        help="with no command: open the desktop app on this database (default: the settings, "
        "else $LABBATCH_DB or a SQLite file in the user data dir)",
    )
    parser.add_argument(
        "--user", dest="gui_user", metavar="NAME", help="with no command: who you are"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", parents=[common], help="check a DAG file; store nothing")
    p.add_argument("file")

    p = sub.add_parser("run", parents=[common], help="submit a DAG and run it on a local pool")
    p.add_argument("file")
    p.add_argument(
        "--cores",
        type=float,
        default=None,
        help="cores per local worker (default: all cores of this machine)",
    )
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")

    p = sub.add_parser("submit", parents=[common], help="store a DAG; print its batch id")
    p.add_argument("file")

    p = sub.add_parser(
        "serve", parents=[common], help="run the driver and a local pool until Ctrl-C"
    )
    p.add_argument(
        "--cores", type=float, default=None, help="cores per local worker (default: as stored)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="local worker processes (default: as stored)"
    )

    p = sub.add_parser("status", parents=[common], help="show a batch")
    p.add_argument("batch", type=int)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("jobs", parents=[common], help="list a batch's jobs")
    p.add_argument("batch", type=int)
    p.add_argument("--state", help="only jobs in this state (pending, ready, running, success, …)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("log", parents=[common], help="print a job's log")
    p.add_argument("batch", type=int)
    p.add_argument("job", help="job id or name")
    p.add_argument("--attempt", type=int, help="a given attempt (default: the last)")

    p = sub.add_parser("cancel", parents=[common], help="cancel a batch")
    p.add_argument("batch", type=int)

    p = sub.add_parser("retry", parents=[common], help="run a finished batch's failures again")
    p.add_argument("batch", type=int)
    p.add_argument(
        "--failed",
        action="store_true",
        help="only failed jobs and what depends on them (not jobs a cancel stopped)",
    )

    p = sub.add_parser("why", parents=[common], help="why a job is not running (yet)")
    p.add_argument("batch", type=int)
    p.add_argument("job", help="job id or name")

    from app.cli.billing import add_billing_parsers
    from app.cli.pools import add_pool_parser

    add_pool_parser(sub, common)
    add_billing_parsers(sub, common)
    from app.cli.prices import add_price_parser  # sets its own handler

    add_price_parser(sub, common)
    from app.cli.imports import add_import_parser  # sets its own handler

    add_import_parser(sub, common)
    from app.timeline_commands import add_timeline_parser  # sets its own handler

    add_timeline_parser(sub, common)

    p = sub.add_parser("list", parents=[common], help="list your batches")
    p.add_argument("--all", action="store_true", help="every user's batches")
    p.add_argument("--limit", type=int, default=20)
    return parser


class _NoTraceback(logging.Formatter):
    """Tracebacks go to the log file only; a user sees one line."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text = saved


def _setup_logging(verbose: bool) -> Path | None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.INFO if verbose else logging.ERROR)
    stderr.setFormatter(_NoTraceback("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        from app.models.db import data_dir

        path = data_dir() / "labbatch.log"
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=5_000_000, backupCount=2)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(handler)
        return path
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `labbatch`; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from app.views.display import display_problem  # before Qt, which would abort

        if problem := display_problem():
            print(f"labbatch: {problem}", file=sys.stderr)
            return 2
        log_path = _setup_logging(False)
        from app.views.app import run_desktop

        return run_desktop(db_url=args.gui_db, user=args.gui_user, log_file=log_path)
    log_path = _setup_logging(args.verbose)
    from app import commands

    handler: Callable[[argparse.Namespace], Awaitable[int]] = getattr(
        args, "handler", None
    ) or getattr(commands, f"cmd_{args.command}")
    args.user = args.user or default_user()
    try:
        return asyncio.run(handler(args))
    except DagFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"{n} problem{'s' if n != 1 else ''}; nothing was submitted", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        print(f"labbatch: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # the reader went away (`labbatch jobs 1 | head`): not an error worth a message
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK
    except KeyboardInterrupt:
        print("\nlabbatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (LabBatchError, Exception) as exc:
        logging.getLogger().handlers[0].setLevel(logging.CRITICAL)  # the file gets the traceback
        log.exception("internal error in `labbatch %s`", args.command)
        where = f"; details in {log_path}" if log_path else ""
        print(f"labbatch: internal error: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
        return EXIT_INTERNAL


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM (and SIGINT) set ``stop`` so the driver shuts down cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
