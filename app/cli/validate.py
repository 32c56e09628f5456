"""`labbatch validate`: check a DAG file and store nothing (so it loads no database code)."""

from __future__ import annotations

import argparse

from app.cli.common import EXIT_OK
from app.models.scatter import job_count_text
from app.models.spec import load_dag_file


async def cmd_validate(args: argparse.Namespace) -> int:
    spec = load_dag_file(args.file)
    print(f"{args.file}: valid — batch {spec.name!r}, {job_count_text(spec.jobs)}")
    return EXIT_OK
