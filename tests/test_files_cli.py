"""`labbatch run` of the files example, `labbatch files` / `get`, pool settings, lifetime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from app.engine import browse
from app.engine.batches import file_store, frontend
from app.engine.workers import pools
from app.models.db import open_database
from tests.engine_helpers import USER, engine
from tests.test_files import sqlite_url, submit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def labbatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=os.environ.copy(),
    )


def test_the_files_example_runs_and_its_outputs_can_be_listed_and_fetched(
    tmp_path: Path, lb_home: Path
) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    db = sqlite_url(tmp_path)
    run = labbatch("--db", db, "run", str(tmp_path / "examples" / "files.yaml"))
    assert run.returncode == 0, run.stderr
    assert "files in" in run.stdout  # each job's transfer figures
    results = tmp_path / "examples" / "results"
    assert (results / "summary.txt").read_text().splitlines() == [
        "3-mers in the reference: 6",
        "sample a: 1 reads match",
        "sample b: 0 reads match",
    ]
    assert (results / "counts.a").read_text() == "1\n"
    status = json.loads(labbatch("--db", db, "status", "1", "--json").stdout)
    staging = {job["name"]: job["staging"] for job in status["jobs"]}
    assert staging["report"]["copied_bytes"] == 0
    assert staging["report"]["in_bytes"] > 0 and staging["report"]["out_bytes"] > 0

    listed = json.loads(labbatch("--db", db, "files", "1", "index", "--json").stdout)
    kmers = lb_home / "scratch" / "1" / "1" / "kmers.tsv"
    assert listed == [
        {
            "job_id": 1,
            "job": "index",
            "name": "kmers",
            "size_bytes": kmers.stat().st_size,
            "where": str(kmers),
            "kept": True,
        }
    ]
    got = labbatch("--db", db, "get", "1", "count.counts", str(tmp_path / "fetched" / "c"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "fetched" / "c.a").read_text() == "1\n"
    bad = labbatch("--db", db, "get", "1", "count.nope")
    assert bad.returncode == 1 and "has no output 'nope' (counts)" in bad.stderr


def test_pool_scratch_and_retention_settings(tmp_path: Path) -> None:
    db = sqlite_url(tmp_path)
    changed = labbatch("--db", db, "pool", "set", "local", "--scratch", "scr", "--retention", "2h")
    assert changed.returncode == 0, changed.stderr
    shown = json.loads(labbatch("--db", db, "pool", "show", "local", "--json").stdout)
    assert (shown["scratch"], shown["retention_s"]) == (str(Path.cwd() / "scr"), 7200.0)
    bad = labbatch("--db", db, "pool", "set", "local", "--retention", "soon")
    assert bad.returncode == 2 and "--retention 'soon': not a valid duration" in bad.stderr


async def test_files_stay_for_the_retention_and_go_with_the_batch(tmp_path: Path) -> None:
    scratch = tmp_path / "my scratch"
    async with engine(sqlite_url(tmp_path), start=False) as eng:
        await pools.set_pool(eng.db, "local", scratch=str(scratch), retention_s=3600.0)
        assert await eng.runtime.start()
        text = "version: 1\njobs: [{name: a, outputs: [o], command: 'echo hi > $o'}]\n"
        first = await submit(eng, text, tmp_path)
        second = await submit(eng, text, tmp_path)
        await eng.wait(first)
        await eng.wait(second)
        assert (scratch / str(first) / "1" / "o").read_text() == "hi\n"
        ended = (await frontend.get_batch(eng.db, first)).time_completed
        assert ended is not None
        # within the retention nothing goes; past it, both batches' files go
        assert await file_store.remove_expired_files(eng.db, now=ended + 3000) == 0
        await browse.delete_batch(eng.db, second, user=USER)  # deleted: its files go now
        assert not (scratch / str(second)).exists()
        assert (scratch / str(first)).exists()
        assert await file_store.remove_expired_files(eng.db, now=time.time() + 3601) == 1
        assert not (scratch / str(first)).exists()


async def test_a_batch_running_again_keeps_its_files(tmp_path: Path) -> None:
    db = await open_database(sqlite_url(tmp_path))
    try:
        await pools.set_pool(db, "local", retention_s=1.0)
        spec_text = "version: 1\njobs: [{name: a, outputs: [o], command: 'true'}]\n"
        batch_id = await submit_only(db, spec_text, tmp_path)  # never runs: not complete
        kept = tmp_path / "home" / "scratch" / str(batch_id)
        kept.mkdir(parents=True)
        assert await file_store.remove_expired_files(db, now=time.time() + 10**6) == 0
        assert kept.exists()
    finally:
        await db.close()


async def submit_only(db, text: str, base: Path) -> int:  # type: ignore[no-untyped-def]
    from app.models.spec import parse_dag_text

    spec = parse_dag_text(text, source=str(base / "p.yaml"))
    return await frontend.submit_batch(db, spec, user=USER)
