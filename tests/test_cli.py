"""The `labbatch` command as a user runs it: real processes, real exit codes."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def labbatch(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        **kw,  # type: ignore[call-overload]
    )


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def wait_for(check: Callable[[], bool], *, timeout_s: float = 30, what: str = "it") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def worker_pids(home: Path) -> list[int]:
    """Worker agent processes whose work dir is under this test's data dir."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"app.worker" in cmdline and str(home).encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def chain_dag(tmp_path: Path, ran: Path, *, n: int, sleep_s: float) -> Path:
    """A chain j0 -> j1 -> … whose jobs append their names to ``ran`` (to count runs)."""
    jobs = "\n".join(
        f"  - {{name: j{i}, command: 'echo j{i} >> {ran}; sleep {sleep_s}'"
        + (f", depends_on: [j{i - 1}]" if i else "")
        + "}"
        for i in range(n)
    )
    dag = tmp_path / "chain.yaml"
    dag.write_text(f"version: 1\nname: chain\njobs:\n{jobs}\n")
    return dag


def status(batch: int, db: str) -> dict:
    result = labbatch("status", str(batch), "--json", "--db", db)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_run_examples_exit_codes_and_json(db: str, lb_home: Path) -> None:
    ok = labbatch("run", str(EXAMPLES / "diamond.yaml"), "--db", db, "--json")
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["state"] == "success"
    assert {
        "id",
        "name",
        "state",
        "n_jobs",
        "n_succeeded",
        "n_failed",
        "n_cancelled",
        "duration",
        "jobs",
    } <= set(body)
    assert body["n_jobs"] == 4
    assert set(body["jobs"][0]) >= {"job_id", "name", "state", "exit_code", "attempts"}

    bad = labbatch("run", str(EXAMPLES / "failure.yaml"), "--db", db, "--json")
    assert bad.returncode == 1
    states = {j["name"]: (j["state"], j["attempts"]) for j in json.loads(bad.stdout)["jobs"]}
    assert states == {
        "flaky": ("Failed", 1),
        "after-flaky": ("Cancelled", 0),
        "report": ("Success", 1),
        "independent": ("Success", 1),
    }
    text = labbatch("run", str(EXAMPLES / "per-sample.yaml"), "--db", db)
    assert text.returncode == 0
    assert "success" in text.stdout and "6 jobs" in text.stdout
    assert worker_pids(lb_home) == []


def test_a_large_batch_lists_only_the_jobs_that_did_not_succeed(db: str, tmp_path: Path) -> None:
    """Over 50 jobs, the report is the summary line and the jobs worth a look, not a table."""
    jobs = [{"name": f"ok-{i}", "command": "true", "cpu": 0.25} for i in range(60)]
    fine = tmp_path / "fine.json"
    fine.write_text(json.dumps({"version": 1, "name": "fine", "jobs": jobs}))
    done = labbatch("run", str(fine), "--db", db)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1
    assert "success" in done.stdout and "60 jobs: 60 succeeded" in done.stdout

    jobs.append({"name": "broken", "command": "exit 3", "cpu": 0.25})
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps({"version": 1, "name": "mixed", "jobs": jobs}))
    failed = labbatch("run", str(mixed), "--db", db)
    assert failed.returncode == 1
    lines = failed.stdout.strip().splitlines()
    assert "60 succeeded, 1 failed" in lines[0]
    assert len(lines) == 2 and "broken" in lines[1] and "exit 3" in lines[1]


def test_invalid_file_exits_2_names_everything_and_stores_nothing(db: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nname: bad\njobs:\n"
        "  - name: a\n    command: 'true'\n    cpu: 3\n"
        "  - name: b\n    command: 'true'\n    depends_on: [nope]\n"
    )
    result = labbatch("run", str(bad), "--db", db)
    assert result.returncode == 2
    assert f"{bad}:6: job 'a': field 'cpu'" in result.stderr
    assert "job 'b': field 'depends_on'" in result.stderr and "nope" in result.stderr
    assert "2 problems; nothing was submitted" in result.stderr
    assert "Traceback" not in result.stderr
    listing = labbatch("list", "--all", "--db", db)
    assert listing.returncode == 0 and listing.stdout == ""
    assert labbatch("validate", str(bad)).returncode == 2
    good = labbatch("validate", str(EXAMPLES / "diamond.yaml"))
    assert good.returncode == 0 and "4 jobs" in good.stdout


def test_user_errors_are_one_line_without_traceback(db: str) -> None:
    missing = labbatch("status", "42", "--db", db)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "labbatch: there is no batch 42"
    wrong_db = labbatch("list", "--db", "mysql://somewhere/db")
    assert wrong_db.returncode == 2
    assert "use sqlite:///path.db or postgresql://" in wrong_db.stderr
    assert "Traceback" not in wrong_db.stderr


def test_db_and_user_given_before_the_command_count_for_the_command(
    db: str, tmp_path: Path
) -> None:
    dag = tmp_path / "one.yaml"
    dag.write_text("version: 1\nname: one\njobs:\n  - {name: a, command: 'true'}\n")
    submitted = labbatch("--db", db, "--user", "ada", "submit", str(dag))
    assert submitted.returncode == 0, submitted.stderr
    batch = int(submitted.stdout.strip().split()[-1])
    assert status(batch, db)["user"] == "ada"  # stored in that database, as that user
    assert labbatch("--db", db, "status", str(batch)).returncode == 0
    # and a command's own --db still wins over one given before it
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert labbatch("--db", other, "status", str(batch), "--db", db).returncode == 0


def test_log_jobs_and_cancel_commands(db: str) -> None:
    run = labbatch("run", str(EXAMPLES / "failure.yaml"), "--db", db, "--json")
    batch = json.loads(run.stdout)["id"]
    log = labbatch("log", str(batch), "flaky", "--db", db)
    assert log.returncode == 0 and log.stdout == "about to fail\n"
    cancelled = labbatch("jobs", str(batch), "--state", "cancelled", "--db", db)
    assert "after-flaky" in cancelled.stdout and "independent" not in cancelled.stdout
    bad_state = labbatch("jobs", str(batch), "--state", "sleeping", "--db", db)
    assert bad_state.returncode == 1 and "unknown job state" in bad_state.stderr


def test_ctrl_c_stops_run_and_leaves_no_worker(db: str, lb_home: Path, tmp_path: Path) -> None:
    dag = tmp_path / "long.yaml"
    dag.write_text("version: 1\nname: long\njobs: [{name: nap, command: 'sleep 60'}]\n")
    proc = start("run", str(dag), "--db", db)
    wait_for(lambda: worker_pids(lb_home) != [], what="a worker")
    wait_for(lambda: _job_state(db, 1, "nap") == "Running", what="the job to start")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "batch 1 is left unfinished" in err
    wait_for(lambda: worker_pids(lb_home) == [], timeout_s=10, what="workers to exit")
    # The batch is intact and a later driver finishes it.
    assert status(1, db)["state"] == "running"


def _job_state(db: str, batch: int, name: str) -> str | None:
    result = labbatch("jobs", str(batch), "--json", "--db", db)
    if result.returncode != 0:
        return None
    return {j["name"]: j["state"] for j in json.loads(result.stdout)}.get(name)


def test_driver_killed_mid_batch_resumes_without_rerunning(
    db_url: str, lb_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = db_url
    monkeypatch.setenv("LABBATCH_LEASE_TTL_S", "1.5")
    ran = tmp_path / "ran.txt"
    dag = chain_dag(tmp_path, ran, n=8, sleep_s=0.3)
    submitted = labbatch("submit", str(dag), "--db", db)
    assert submitted.returncode == 0 and submitted.stdout.strip() == "1"

    first = start("serve", "--db", db)
    wait_for(lambda: ran.exists() and len(ran.read_text().split()) >= 3, what="three jobs")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    survivors = worker_pids(lb_home)
    assert survivors, "the worker outlives its driver, to be adopted"

    second = start("serve", "--db", db)
    try:
        wait_for(lambda: status(1, db)["complete"], timeout_s=40, what="the batch to finish")
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    assert second.returncode == 0
    body = status(1, db)
    assert body["state"] == "success"
    assert ran.read_text().split() == [f"j{i}" for i in range(8)]  # each job ran exactly once
    wait_for(lambda: worker_pids(lb_home) == [], timeout_s=10, what="workers to exit")


def test_run_takes_over_when_the_driver_it_waits_for_was_killed(
    db: str, lb_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `labbatch run` started just after another driver was killed finds its lease still live;
    # once the lease lapses, the run drives its batch itself instead of waiting forever. The
    # lease outlives the second run's start-up even on a loaded machine (seconds there).
    monkeypatch.setenv("LABBATCH_LEASE_TTL_S", "4")
    ran = tmp_path / "ran.txt"
    first = start("run", str(chain_dag(tmp_path, ran, n=20, sleep_s=0.3)), "--db", db)
    wait_for(lambda: ran.exists(), what="the first run's first job")
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)

    second = labbatch("run", str(EXAMPLES / "diamond.yaml"), "--db", db, timeout=90)
    assert second.returncode == 0, second.stderr
    assert "the driver runs in another process" in second.stderr
    assert "this process drives batch 2 now" in second.stderr
    assert status(2, db)["state"] == "success"


def test_run_shows_progress_on_a_terminal(db: str) -> None:
    """On a terminal `run` redraws `done / total`; piped, it prints only the summary."""
    main_fd, tty_fd = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "run", str(EXAMPLES / "diamond.yaml"), "--db", db],
            stdout=subprocess.PIPE,
            stderr=tty_fd,
            text=True,
            env=os.environ.copy(),
        )
        os.close(tty_fd)
        out, _ = proc.communicate(timeout=60)
        shown = b""
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main_fd)
    assert proc.returncode == 0
    assert b"4/4 jobs done" in shown
    assert "jobs done" not in out


def test_pool_billing_cost_estimate_why_and_retry_commands(db: str, tmp_path: Path) -> None:
    def ok(*args: str) -> str:
        result = labbatch(*args, "--db", db)
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    assert "0.5/core-hour" in ok("pool", "set", "local", "--price", "0.5")
    assert "burst (local): 0 live of max 3" in ok(
        "pool", "create", "burst", "--worker-cores", "1", "--max", "3", "--max-live", "3"
    )
    shown = json.loads(ok("pool", "show", "burst", "--json"))
    assert shown["max_instances"] == 3 and shown["worker_cores"] == 1.0
    bad = labbatch("pool", "create", "Bad", "--min", "5", "--max", "2", "--db", db)
    assert bad.returncode == 2 and "min instances <= max live" in bad.stderr
    assert "held at 2" in ok("pool", "scale", "burst", "2")
    too_many = labbatch("pool", "scale", "burst", "9", "--db", db)
    assert too_many.returncode == 2 and "can scale to 0 … 3" in too_many.stderr

    estimate = ok("estimate", str(EXAMPLES / "per-sample.yaml"))
    assert estimate.startswith("Expected cost $") and "pool local" in estimate

    ok("billing", "create", "grant", "--limit", "10", "--users", "alice")
    assert "members: alice" in ok("billing", "list")
    grant = tmp_path / "grant.yaml"
    grant.write_text("version: 1\nbilling_project: grant\njobs: [{name: a, command: 'true'}]\n")
    refused = labbatch("submit", str(grant), "--db", db, "--user", "bob")
    assert refused.returncode == 1 and "bob is not a member of billing project 'grant'" in (
        refused.stderr
    )

    once = tmp_path / "once"
    flaky = tmp_path / "flaky.yaml"
    flaky.write_text(
        "version: 1\njobs:\n"
        f"  - {{name: flaky, command: 'if [ ! -e {once} ]; then touch {once}; exit 3; fi'}}\n"
        "  - {name: after, command: 'true', depends_on: [flaky]}\n"
    )
    run = labbatch("run", str(flaky), "--db", db, "--json")
    assert run.returncode == 1
    batch = str(json.loads(run.stdout)["id"])
    assert "is Cancelled" in ok("why", batch, "after")
    assert "2 job(s) will run again" in ok("retry", batch, "--failed")
    assert "waiting for 1 parent job(s) to finish: flaky" in ok("why", batch, "after")
    cost = ok("cost", "--by", "batch")
    assert f"{batch} " in cost and "total" in cost
