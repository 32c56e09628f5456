"""Batch counters always equal what the jobs table says, through cancels, retries, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from app.engine.batches import frontend
from app.engine.batches.counters import BatchCounters, counters_from_states, repair_counters
from app.engine.batches.rerun import retry_batch
from app.engine.batches.results import apply_results
from app.engine.workers.instances import requeue_attempts
from app.errors import UserError
from app.models.db import open_database
from app.models.spec import parse_dag_text
from app.models.tables import Attempt, Batch, Job, JobState
from app.protocol import JobResult, Outcome
from tests.engine_helpers import USER, dag, engine
from tests.test_cli import labbatch, start, status, wait_for, worker_pids

T = TypeVar("T")

# -- the pure function ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_by_state", "expected"),
    [
        ({}, BatchCounters()),
        ({"Pending": 3, "Running": 1}, BatchCounters(n_jobs=4)),
        (
            {"Success": 5, "Failed": 1, "Error": 2, "Cancelled": 3, "Ready": 1},
            BatchCounters(n_jobs=12, n_completed=11, n_succeeded=5, n_failed=3, n_cancelled=3),
        ),
    ],
)
def test_counters_follow_job_states(n_by_state: dict[str, int], expected: BatchCounters) -> None:
    assert counters_from_states(n_by_state) == expected


# -- what the jobs table says -----------------------------------------------------------------


def stored_and_derived(conn: Connection, batch_id: int) -> tuple[BatchCounters, BatchCounters]:
    stored = BatchCounters(
        *conn.execute(
            select(
                Batch.n_jobs, Batch.n_completed, Batch.n_succeeded, Batch.n_failed,
                Batch.n_cancelled,
            ).where(Batch.id == batch_id)
        ).one()
    )  # fmt: skip
    n_by_state = dict(
        conn.execute(
            select(Job.state, func.count()).where(Job.batch_id == batch_id).group_by(Job.state)
        ).all()
    )
    return stored, counters_from_states(n_by_state)


def assert_counters_match(conn: Connection, batch_id: int) -> None:
    stored, derived = stored_and_derived(conn, batch_id)
    assert stored == derived
    complete = conn.execute(select(Batch.complete).where(Batch.id == batch_id)).scalar_one()
    assert complete == (derived.n_completed == derived.n_jobs)


def chains(n_chains: int, length: int, sleep_s: float) -> str:
    jobs = [
        f"  - {{name: c{c}j{i}, command: 'sleep {sleep_s}'"
        + (f", depends_on: [c{c}j{i - 1}]" if i else "")
        + "}"
        for c in range(n_chains)
        for i in range(length)
    ]
    return "version: 1\nname: chains\njobs:\n" + "\n".join(jobs) + "\n"


# -- the reported case: a cancel while no driver runs -------------------------------------------


def test_cancel_with_no_driver_then_restart_keeps_counters_equal_to_jobs(
    db_url: str, lb_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABBATCH_LEASE_TTL_S", "1.5")
    file = tmp_path / "chains.yaml"
    file.write_text(chains(15, 10, 0.4))  # 150 jobs, chains of 10
    assert labbatch("submit", str(file), "--db", db_url).returncode == 0

    first = start("serve", "--db", db_url)
    try:
        wait_for(lambda: status(1, db_url)["n_succeeded"] >= 3, timeout_s=40, what="3 successes")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    cancelled = labbatch("cancel", "1", "--db", db_url)
    assert cancelled.returncode == 0, cancelled.stderr

    second = start("serve", "--db", db_url)
    try:
        wait_for(lambda: status(1, db_url)["complete"], timeout_s=40, what="the batch to end")
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=30)
    body = status(1, db_url)
    states = [job["state"] for job in body["jobs"]]
    derived = counters_from_states({s: states.count(s) for s in set(states)})
    assert derived == BatchCounters(
        body["n_jobs"], body["n_completed"], body["n_succeeded"], body["n_failed"],
        body["n_cancelled"],
    )  # fmt: skip
    assert body["n_completed"] == body["n_jobs"] == len(body["jobs"]) == 150
    assert body["state"] == "cancelled"
    wait_for(lambda: worker_pids(lb_home) == [], timeout_s=10, what="workers to exit")


async def test_cancel_while_an_always_run_parent_runs_keeps_its_children_cancelled(
    db_url: str,
) -> None:
    async with engine(db_url) as eng:
        batch_id = await eng.submit(
            """
            version: 1
            jobs:
              - {name: clean, command: 'sleep 1', always_run: true}
              - {name: b, command: 'true', depends_on: [clean]}
              - {name: c, command: 'true', depends_on: [b]}
            """
        )

        async def running() -> bool:
            return await eng.job_state(batch_id, "clean") == JobState.RUNNING

        await wait_until(running)
        await frontend.cancel_batch(eng.db, batch_id, user=USER)
        info = await eng.wait(batch_id)
        # the parent succeeds after the cancel: its children stay cancelled, counted once
        states = {name: j.state for name, j in (await eng.jobs(batch_id)).items()}
        assert states == {"clean": "Success", "b": "Cancelled", "c": "Cancelled"}
        assert (info.n_jobs, info.n_completed, info.n_succeeded, info.n_cancelled) == (3, 3, 1, 2)
        await eng.db.run(lambda conn: assert_counters_match(conn, batch_id))


async def wait_until(check: Any, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


# -- the driver's start repairs drift (whatever caused it) --------------------------------------


async def test_driver_start_repairs_and_logs_drifted_counters(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with engine(db_url, start=False) as eng:
        batch_id = await eng.submit(chains(1, 3, 0))
        await eng.db.run(
            lambda conn: conn.execute(
                update(Batch)
                .where(Batch.id == batch_id)
                .values(n_completed=158, n_succeeded=20, complete=True, state="success")
            )
        )
        with caplog.at_level(logging.WARNING, logger="labbatch.counters"):
            assert await eng.runtime.start()
        assert f"batch {batch_id}: counters disagreed" in caplog.text
        assert "n_completed 158 -> 0" in caplog.text
        info = await eng.wait(batch_id)
        assert (info.n_completed, info.n_succeeded, info.state) == (3, 3, "success")
        await eng.db.run(lambda conn: assert_counters_match(conn, batch_id))


# -- random interleavings of what the driver and front ends do ----------------------------------


def _dag_text(parents: list[list[int]], always_run: list[bool], n_max_attempts: int) -> str:
    lines = []
    for i, (ps, ar) in enumerate(zip(parents, always_run, strict=True)):
        deps = f", depends_on: [{', '.join(f'j{p}' for p in ps)}]" if ps else ""
        lines.append(
            f"  - {{name: j{i}, command: 'true', always_run: {str(ar).lower()}, "
            f"n_max_attempts: {n_max_attempts}{deps}}}"
        )
    return "version: 1\nname: fuzz\njobs:\n" + "\n".join(lines) + "\n"


@st.composite
def dags(draw: st.DrawFn) -> str:
    n = draw(st.integers(2, 7))
    parents = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=2))) if i else [] for i in range(n)
    ]
    always_run = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return _dag_text(parents, always_run, draw(st.integers(1, 2)))


OPS = (
    "place",
    "place",
    "end",
    "end",
    "end",
    "repeat",
    "cancel",
    "lose",
    "restart",
    "retry",
    "append",
)


def _place(conn: Connection, batch_id: int, k: int) -> None:
    """What the driver's pass does to Ready jobs it places on a worker."""
    rows = conn.execute(
        select(Job.job_id, Job.last_attempt)
        .where(Job.batch_id == batch_id, Job.state == JobState.READY)
        .order_by(Job.job_id)
        .limit(k)
    ).all()
    for job_id, last in rows:
        conn.execute(
            update(Job)
            .where(Job.batch_id == batch_id, Job.job_id == job_id)
            .values(
                state=JobState.RUNNING,
                n_attempts=Job.n_attempts + 1,
                last_attempt=last + 1,
                instance_name="w",
            )
        )
        conn.execute(
            insert(Attempt).values(
                batch_id=batch_id,
                job_id=job_id,
                attempt=last + 1,
                instance_name="w",
                time_scheduled=time.time(),
            )
        )


def _open_refs(conn: Connection, batch_id: int) -> list[tuple[int, int, int]]:
    rows = conn.execute(
        select(Attempt.batch_id, Attempt.job_id, Attempt.attempt).where(
            Attempt.batch_id == batch_id, Attempt.end_time.is_(None)
        )
    )
    return [(b, j, a) for b, j, a in rows]


def _results(refs: list[tuple[int, int, int]], outcome: Outcome) -> list[JobResult]:
    now = time.time()
    code = {Outcome.SUCCESS: 0, Outcome.FAILED: 1}.get(outcome)
    return [JobResult(b, j, a, outcome, code, now, now) for b, j, a in refs]


def _pick(items: list[T], data: st.DataObject) -> list[T]:
    """Some of the items, drawn by position (the same draws pick the same items on a replay)."""
    positions = data.draw(st.sets(st.integers(0, 7), min_size=1, max_size=3))
    return list({items[i % len(items)]: None for i in sorted(positions)})


async def _step(db: Any, batch_id: int, op: str, data: st.DataObject, sent: list[Any]) -> None:
    now = time.time()
    if op == "place":
        k = data.draw(st.integers(1, 3))
        await db.run(lambda conn: _place(conn, batch_id, k))
    elif op == "end":
        refs = await db.run(lambda conn: _open_refs(conn, batch_id))
        if refs:
            results = _results(_pick(refs, data), data.draw(st.sampled_from(list(Outcome))))
            sent.extend(results)
            await db.run(lambda conn: apply_results(conn, results, now))
    elif op == "repeat" and sent:  # a worker that reports again after a reconnect
        again = _pick(sent, data)
        await db.run(lambda conn: apply_results(conn, again, now))
    elif op == "cancel":
        await frontend.cancel_batch(db, batch_id, user=USER)
    elif op in ("lose", "restart"):
        charge = op == "lose"  # a lost worker costs an attempt; a driver that stops does not
        await db.run(
            lambda conn: requeue_attempts(
                conn, _open_refs(conn, batch_id), reason=op, now=now, charge=charge
            )
        )
        if op == "restart":
            repairs = await db.run(lambda conn: repair_counters(conn, now))
            assert [r for r in repairs if r.batch_id == batch_id] == []
    elif op == "append":  # a front end adds jobs that depend on the batch's own
        names = [j.name for j in await frontend.list_jobs(db, batch_id)]
        parents = sorted({names[i % len(names)] for i in data.draw(st.sets(st.integers(0, 9)))})
        text = _dag_text([[], [0]], [False, data.draw(st.booleans())], 1).replace(
            "name: j", f"name: u{len(names)}_"
        )
        text = text.replace("depends_on: [j0]", f"depends_on: [u{len(names)}_0]")
        if parents:
            text = text.replace("always_run", f"depends_on: [{', '.join(parents)}], always_run", 1)
        spec = parse_dag_text(text, source="<append>", existing_jobs=names)
        with contextlib.suppress(UserError):  # refused once the batch is cancelled
            await frontend.append_update(db, batch_id, spec, user=USER)
    elif op == "retry":
        info = await frontend.get_batch(db, batch_id)
        if info.complete:
            await retry_batch(db, batch_id, user=USER, failed_only=data.draw(st.booleans()))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_counters_match_jobs_under_random_interleavings(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'fuzz.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(text=dags(), ops=st.lists(st.sampled_from(OPS), min_size=6, max_size=30), data=st.data())
    def interleave(text: str, ops: list[str], data: st.DataObject) -> None:
        asyncio.run(_interleave(url, text, ops, data))

    interleave()


async def _interleave(url: str, text: str, ops: list[str], data: st.DataObject) -> None:
    db = await open_database(url)
    try:
        batch_id = await frontend.submit_batch(db, dag(text), user=USER)
        sent: list[JobResult] = []
        for op in ops:
            await _step(db, batch_id, op, data, sent)
            await db.run(lambda conn: assert_counters_match(conn, batch_id))
    finally:
        await db.close()
