"""`labbatch import`: a hailtop.batch-style script, GraphML or DOT file to a YAML DAG file."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path, PurePath

from app.cli.common import EXIT_OK
from app.errors import ConfigError, UserError
from app.models.importers import import_file
from app.models.scatter import job_count_text
from app.models.spec import DagFileError, parse_dag_text


async def cmd_import(args: argparse.Namespace) -> int:
    """Import, validate the YAML text written, and write it whole or not at all."""
    return await asyncio.to_thread(_import, args)  # files and a child process: blocking


def _import(args: argparse.Namespace) -> int:
    output = args.output or os.fspath(PurePath(args.file).with_suffix(".yaml"))
    if output != "-" and Path(output).resolve() == Path(args.file).resolve():
        raise ConfigError(f"{output} is the file being imported: give another with -o")
    try:
        imported = import_file(args.file, script_timeout_s=args.timeout)
        text = imported.to_yaml(header=f"imported from {args.file} by labbatch import")
        # what we write must read back as valid (a draft: but for its missing commands);
        # a scatter's values file is the input's
        spec = imported.spec
        if not imported.missing_commands:
            spec = parse_dag_text(
                text, source=output, base_dir=Path(args.file).parent, expand_scatter=False
            )
    except DagFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        n = len(exc.problems)
        print(f"{n} problem{'s' if n != 1 else ''}; nothing was written", file=sys.stderr)
        return exc.exit_code
    for note in imported.notes:
        print(f"labbatch: {note}", file=sys.stderr)
    if output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    _write_whole(Path(output), text)
    print(f"{output}: batch {spec.name!r}, {job_count_text(spec.jobs)} (from {args.file})")
    return EXIT_OK


def _write_whole(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory, so a reader never sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
