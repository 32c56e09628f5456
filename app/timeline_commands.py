"""`labbatch timeline BATCH -o FILE.html`: a batch's attempts by worker over time, as one
self-contained HTML file (the desktop shows the same timeline live)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from app.engine.timeline import load_timeline
from app.engine.timeline_html import render_html
from app.errors import ConfigError
from app.models.db import open_database

EXIT_OK = 0


def add_timeline_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `labbatch timeline` to the subcommands."""
    p = sub.add_parser(
        "timeline",
        parents=[common],
        help="write a batch's timeline (attempts by worker over time) as an HTML file",
        description="Write a batch's timeline: each attempt a bar on its worker's row, "
        "coloured by outcome, staging drawn apart from the run. The file is self-contained "
        "(no network needed to open it) and zooms with its +/- buttons or Ctrl + wheel.",
    )
    p.add_argument("batch", type=int)
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE.html",
        help="where to write it; '-' for stdout (default: batch-BATCH-timeline.html)",
    )
    p.set_defaults(handler=cmd_timeline)


async def cmd_timeline(args: argparse.Namespace) -> int:
    output = args.output or f"batch-{args.batch}-timeline.html"
    db = await open_database(args.db)
    try:
        timeline = await load_timeline(db, args.batch)
    finally:
        await db.close()
    text = render_html(timeline)
    if output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    try:
        await asyncio.to_thread(Path(output).write_text, text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{output}: cannot write it ({exc.strerror or exc})") from exc
    print(f"wrote {output}: {timeline.describe()}", file=sys.stderr)
    return EXIT_OK
