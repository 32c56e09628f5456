"""`labbatch files` and `labbatch get`: a batch's kept output files, and copying one out."""

from __future__ import annotations

import argparse

from app.cli.common import EXIT_OK, print_json
from app.engine.batches import file_store
from app.models.db import open_database
from app.models.units import format_bytes


async def cmd_files(args: argparse.Namespace) -> int:
    db = await open_database(args.db)
    try:
        files = await file_store.batch_files(db, args.batch, job=args.job)
    finally:
        await db.close()
    if args.json:
        print_json(
            [
                {
                    "job_id": f.job_id,
                    "job": f.job,
                    "name": f.name,
                    "size_bytes": f.size_bytes,
                    "where": f.where,
                    "kept": f.kept,
                }
                for f in files
            ]
        )
        return EXIT_OK
    if not files:
        print(f"batch {args.batch} declares no output files")
        return EXIT_OK
    width = max(len(f"{f.job}.{f.name}") for f in files)
    for f in files:
        size = "-" if f.size_bytes is None else format_bytes(f.size_bytes) + "B"
        print(f"  {f.job + '.' + f.name:<{width}}  {size:>10}  {f.where}")
    return EXIT_OK


async def cmd_get(args: argparse.Namespace) -> int:
    db = await open_database(args.db)
    try:
        copies = await file_store.get_file(db, args.batch, args.output, args.dest)
    finally:
        await db.close()
    for path in copies:
        print(path)
    return EXIT_OK
