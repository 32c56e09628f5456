"""`labbatch timeline BATCH -o FILE.html`: a batch's attempts by worker over time, as one
self-contained HTML file (the desktop shows the same timeline live)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.cli.common import EXIT_OK
from app.engine.timeline import load_timeline
from app.engine.timeline_html import render_html
from app.errors import ConfigError
from app.models.db import open_database


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
