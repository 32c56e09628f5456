"""A batch's timeline: attempts by worker with their outcomes, the HTML file, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from app.engine.timeline import AttemptBar, Outcome, Timeline, load_timeline
from app.engine.timeline_html import render_html
from tests.engine_helpers import engine

ROOT = Path(__file__).resolve().parents[1]
FAILURE = (ROOT / "examples" / "failure.yaml").read_text()


async def test_each_attempt_is_a_bar_on_its_workers_row_with_its_outcome(db_url: str) -> None:
    async with engine(db_url, n_workers=2, cores=1) as eng:
        batch = await eng.submit(FAILURE)
        await eng.wait(batch)
        timeline = await load_timeline(eng.db, batch)
    by_job = {bar.job_name: bar for bar in timeline.bars}
    assert set(by_job) == {"flaky", "report", "independent"}  # after-flaky never ran
    assert by_job["flaky"].outcome == Outcome.FAILED
    assert by_job["report"].outcome == by_job["independent"].outcome == Outcome.SUCCESS
    assert set(timeline.workers) == {bar.worker for bar in timeline.bars}
    assert all(bar.start_s is not None and bar.end_s is not None for bar in timeline.bars)
    assert all(bar.run_ms is not None and bar.run_ms >= 0 for bar in timeline.bars)
    assert not timeline.live and timeline.end_s > timeline.start_s
    assert timeline.counts()[Outcome.FAILED] == 1


async def test_a_running_attempt_grows_until_now(db_url: str) -> None:
    async with engine(db_url, cores=1) as eng:
        batch = await eng.submit("version: 1\njobs: [{name: s, command: 'sleep 30'}]\n")

        async def running() -> bool:
            bars = (await load_timeline(eng.db, batch)).bars
            return bool(bars) and bars[0].outcome == Outcome.RUNNING

        from tests.engine_helpers import until

        await until(running, what="the attempt to run")
        timeline = await load_timeline(eng.db, batch)
        (bar,) = timeline.bars
        assert timeline.live and bar.end_s is None
        assert bar.finish_s(timeline.now_s) == timeline.now_s


def _timeline_with_staging() -> Timeline:
    from app.engine.records import BatchInfo

    batch = BatchInfo(
        id=7, name="files <&>", user="u", billing_project="p", state="success",
        complete=True, cancelled=False, n_jobs=2, n_completed=2, n_succeeded=2, n_failed=0,
        n_cancelled=0, time_created=100.0, time_completed=130.0,
    )  # fmt: skip
    staged = AttemptBar(
        job_id=1, job_name="fetch", attempt=1, worker="w-1", scheduled_s=100.0,
        start_s=105.0, end_s=120.0, outcome=Outcome.SUCCESS, end_reason="completed",
        staging_start_s=101.0, staging_ms=4000,
    )  # fmt: skip
    lost = replace(staged, job_id=2, job_name="qc", worker="w-2", staging_start_s=None,
                   staging_ms=None, outcome=Outcome.LOST, end_reason="preempted")  # fmt: skip
    return Timeline(batch, 130.0, ("w-1", "w-2"), (staged, lost))


def test_the_html_file_is_self_contained_with_staging_apart_from_the_run() -> None:
    text = render_html(_timeline_with_staging())
    assert text.startswith("<!DOCTYPE html>") and "</html>" in text
    assert "http://" not in text and "https://" not in text and "<script src" not in text
    assert "files &lt;&amp;&gt;" in text  # names are escaped
    assert text.count('class="stage"') == 1 and text.count('class="bar"') == 2
    assert 'data-outcome="lost"' in text and "preempted" in text
    assert "w-1" in text and "w-2" in text and "staging" in text


def test_the_cli_writes_the_html_without_importing_qt(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "t.html"
    dag = tmp_path / "d.yaml"
    dag.write_text(FAILURE)
    db = f"sqlite:///{tmp_path / 'lb.db'}"
    run = [sys.executable, "-m", "app"]
    done = subprocess.run(
        [*run, "run", str(dag), "--db", db], env=env, capture_output=True, timeout=90
    )
    assert done.returncode == 1, done.stderr  # the batch fails, as it should
    probe = (
        "import sys; from app.cli import main; code = main(sys.argv[1:]); "
        "assert not [m for m in sys.modules if m.startswith('PySide6')], 'Qt imported'; "
        "raise SystemExit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "timeline", "1", "-o", str(out), "--db", db],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 attempts on " in done.stderr
    assert out.read_text().count('class="bar"') == 3
    missing = subprocess.run(
        [*run, "timeline", "42", "--db", db], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode != 0 and "there is no batch 42" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_axis_ticks_are_round_numbers() -> None:
    from app.engine.timeline import tick_offsets_s

    assert tick_offsets_s(13.8) == [0, 2, 4, 6, 8, 10, 12]
    assert tick_offsets_s(0.5) == [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]
    assert len(tick_offsets_s(9000)) <= 11
