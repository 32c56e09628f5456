"""`labbatch files` and `labbatch get`: a batch's kept output files, and copying one out.

Cloud files are sized and copied with the user's own credentials through the pool's storage
SDK; `?` marks a size that could not be read, and stderr says why (no credentials, say)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.cli.common import EXIT_OK, print_json
from app.engine.batches import file_store
from app.engine.batches.file_store import StoredFile
from app.models.db import open_database
from app.models.units import format_bytes


async def cmd_files(args: argparse.Namespace) -> int:
    db = await open_database(args.db)
    try:
        files = await file_store.batch_files(db, args.batch, job=args.job)
    finally:
        await db.close()
    if args.json:
        print_json([_as_json(f) for f in files])
        return EXIT_OK
    if not files:
        print(f"batch {args.batch} declares no output files")
        return EXIT_OK
    width = max(len(f"{f.job}.{f.name}") for f in files)
    for f in files:
        size = "-" if f.size_bytes is None else format_bytes(f.size_bytes) + "B"
        print(f"  {f.job + '.' + f.name:<{width}}  {'?' if f.size_error else size:>10}  {f.where}")
    problems = sorted({f.size_error for f in files if f.size_error})
    for problem in problems[:3]:  # one missing credential makes every cloud file unknown
        print(f"labbatch: size unknown (?): {problem}", file=sys.stderr)
    return EXIT_OK


def _as_json(f: StoredFile) -> dict[str, Any]:
    data: dict[str, Any] = {
        "job_id": f.job_id,
        "job": f.job,
        "name": f.name,
        "size_bytes": f.size_bytes,
        "where": f.where,
        "kept": f.kept,
    }
    if f.size_error:
        data["size_error"] = f.size_error
    return data


async def cmd_get(args: argparse.Namespace) -> int:
    db = await open_database(args.db)
    try:
        copies = await file_store.get_file(db, args.batch, args.output, args.dest)
    finally:
        await db.close()
    for path in copies:
        print(path)
    return EXIT_OK
