"""The `labbatch` command line: parse (light), then import and run the chosen command.

Nothing heavy is imported before the arguments are parsed: `labbatch --help` and argument
errors load no engine, database or Qt code (tests/test_startup.py holds that).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

from app.cli import common
from app.cli.common import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, loading_modules
from app.cli.parsers import build_parser
from app.errors import LabBatchError, UserError
from app.models.identity import default_user

log = logging.getLogger("labbatch.cli")
JOB_REF_HELP = "job id or name; name:NAME for a name made of digits (digits are an id first)"

# command -> the module of app.cli that holds its `cmd_<command>` coroutine
BATCH_COMMANDS = [
    "submit",
    "serve",
    "cancel",
    "retry",
    "why",
]
COMMAND_MODULES = {
    **dict.fromkeys(BATCH_COMMANDS, "batches"),
    "run": "run",
    **dict.fromkeys(("status", "jobs", "log", "list"), "reads"),
    "validate": "validate",
    **dict.fromkeys(("billing", "cost", "estimate"), "billing"),
    "pool": "pools",
    "prices": "prices",
    "import": "imports",
    "files": "files",
    "get": "files",
    "timeline": "timeline",
}


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
    import logging.handlers

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    stderr = logging.StreamHandler()
    stderr.setLevel(logging.INFO if verbose else logging.ERROR)
    stderr.setFormatter(_NoTraceback("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        from app.models.paths import data_dir

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
    """Entry point of `labbatch`; returns the exit code.

    Called as the program (``argv`` None: the console script, ``python -m app``), a command
    ends the process itself once it is done and everything is flushed: the interpreter's
    teardown of SQLAlchemy, aiohttp and friends cost a third of `labbatch status`'s CPU.
    """
    arguments = sys.argv[1:] if argv is None else argv
    # a command line that starts with its command needs no other command's parser
    leading = arguments[0] if arguments and arguments[0] in COMMAND_MODULES else None
    parser = build_parser(leading)
    args, extra = parser.parse_known_args(arguments)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:  # `labbatch run SCRIPT.py [OPTIONS] [--] ARGS`: the script's own arguments
        args.script_args = [*args.script_args, *(extra[1:] if extra[0] == "--" else extra)]
    if args.command is None:
        from app.views.display import display_problem  # before Qt, which would abort

        if problem := display_problem():
            print(f"labbatch: {problem}", file=sys.stderr)
            return 2
        log_path = _setup_logging(False)
        from app.views.app import run_desktop

        return run_desktop(db_url=args.gui_db, user=args.gui_user, log_file=log_path)
    root = logging.getLogger()
    callers_logging = list(root.handlers), root.level
    log_path = _setup_logging(args.verbose)
    common.AS_PROGRAM = argv is None
    try:
        with loading_modules():
            module = importlib.import_module(f"app.cli.{COMMAND_MODULES[args.command]}")
        handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = getattr(
            module, f"cmd_{args.command}"
        )
        # `labbatch --db URL COMMAND`: the options before the command count for the command too
        args.db = args.db or args.gui_db
        args.user = args.user or args.gui_user or default_user()
        code = _run(handler, args, log_path)
    finally:
        if argv is not None:
            _restore_logging(*callers_logging)
    if argv is None:
        _end_process(code)
    return code


def _restore_logging(handlers: list[logging.Handler], level: int) -> None:
    """Called in-process, a command leaves the caller's logging as it found it: its handlers
    held the caller's stderr of the moment (a test's capture, closed later) and the log file
    open, and every later record of the caller went to both."""
    root = logging.getLogger()
    for added in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(added)
        added.close()
    root.setLevel(level)


def _run(
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
    args: argparse.Namespace,
    log_path: Path | None,
) -> int:
    import asyncio

    try:
        return asyncio.run(handler(args))
    except UserError as exc:
        _print_user_error(exc)
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


def _end_process(code: int) -> NoReturn:
    """Flush what was written and exit without the interpreter's teardown.

    The command has closed its database and stopped its workers by now (asyncio.run returned
    and its context managers ran); only idle library threads and module teardown remain.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(code)


def _print_user_error(exc: UserError) -> None:
    # Only a DAG file that was read raises DagFileError: no need to load the spec code (and
    # YAML) for `labbatch status 99`'s "there is no batch 99".
    spec = sys.modules.get("app.models.spec")
    if spec is None or not isinstance(exc, spec.DagFileError):
        print(f"labbatch: {exc}", file=sys.stderr)
        return
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    n = len(exc.problems)
    print(f"{n} problem{'s' if n != 1 else ''}; nothing was submitted", file=sys.stderr)
