"""Under a stream of short jobs the driver places ahead of a full worker, which queues them.

Without it every core sat idle for the driver's round trip between one job's end and the next
one's start; the bounds keep a queue from waiting behind long jobs while other cores are free.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from app.engine.scheduler.planner import DemandCache, plan_pool
from app.engine.workers.instances import (
    QUEUE_FACTOR,
    QUEUE_MAX_AGE_S,
    SHORT_STREAK,
    Assignment,
    InstanceState,
    LiveInstance,
)
from app.engine.workers.pools import get_pool
from app.models.tables import attempts_table
from app.protocol import JobRun
from tests.engine_helpers import engine

CORES_MCPU = 1000


def instance(name: str, *, streak: int = 0, held: int = 0, placed_at: float = 0.0) -> LiveInstance:
    inst = LiveInstance(name, "local", CORES_MCPU, "127.0.0.1:1", "local")
    inst.state = InstanceState.ACTIVE
    inst.short_streak = streak
    for job_id in range(1, held + 1):
        run = JobRun(99, job_id, 1, f"held-{job_id}", "true", cores_mcpu=250)
        inst.assign(Assignment(run, "someone", placed_at=placed_at or time.time()))
    return inst


def test_only_a_streak_of_short_attempts_opens_a_queue() -> None:
    inst = instance("w")
    now = time.time()
    for _ in range(SHORT_STREAK - 1):
        inst.ran(now - 0.01, now)
    assert inst.queue_mcpu(now) == 0
    inst.ran(now - 0.01, now)
    assert inst.queue_mcpu(now) == QUEUE_FACTOR * CORES_MCPU
    inst.ran(now - 5.0, now)  # one long attempt ends the streak
    assert inst.queue_mcpu(now) == 0
    inst.ran(None, now)  # an attempt that never started is no evidence either way: not short
    assert inst.short_streak == 0


def test_a_worker_holding_an_old_placement_queues_nothing() -> None:
    now = time.time()
    fresh = instance("fresh", streak=SHORT_STREAK, held=4, placed_at=now - 0.1)
    stale = instance("stale", streak=SHORT_STREAK, held=4, placed_at=now - QUEUE_MAX_AGE_S - 1)
    assert fresh.queue_mcpu(now) == QUEUE_FACTOR * CORES_MCPU
    assert stale.queue_mcpu(now) == 0


async def _plan(url: str, instances: list[LiveInstance], n_jobs: int) -> dict[str, int]:
    """How many of ``n_jobs`` Ready no-op jobs one pass places on each instance."""
    async with engine(url, start=False) as eng:
        jobs = "\n".join(f"  - {{name: j{i}, command: 'true', cpu: 0.25}}" for i in range(n_jobs))
        await eng.submit(f"version: 1\nname: stream\njobs:\n{jobs}\n")
        pool = await get_pool(eng.db, "local")
        driver: Any = eng.runtime.driver

        def work(conn: Any) -> dict[str, int]:
            plan = plan_pool(
                conn,
                pool,
                instances,
                {},
                running_mcpu={},
                build_run=driver._job_run,
                now=time.time(),
                demand=DemandCache(),
                refresh=True,
            )
            return {name: len(a) for name, a in plan.placed.items()}

        return await eng.db.run(work)


async def test_a_full_worker_after_short_jobs_takes_a_queue(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'labbatch.db'}"
    full = instance("full", streak=SHORT_STREAK, held=4)
    placed = await _plan(url, [full], 100)
    assert placed == {"full": QUEUE_FACTOR * CORES_MCPU // 250}


async def test_free_cores_elsewhere_come_before_any_queue(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'labbatch.db'}"
    full = instance("full", streak=SHORT_STREAK, held=4)
    idle = instance("idle")
    placed = await _plan(url, [full, idle], 100)
    assert placed == {"idle": CORES_MCPU // 250}  # the next pass, once idle is full, queues


async def test_a_stream_runs_queued_but_never_more_at_once_than_the_cores(db_url: str) -> None:
    async with engine(db_url, cores=1) as eng:  # four slots of 0.25 cores
        jobs = "\n".join(f"  - {{name: j{i}, command: 'true', cpu: 0.25}}" for i in range(80))
        batch_id = await eng.submit(f"version: 1\nname: stream\njobs:\n{jobs}\n")
        assert (await eng.wait(batch_id)).state == "success"
        async with eng.db.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        attempts_table.c.time_scheduled,
                        attempts_table.c.start_time,
                        attempts_table.c.end_time,
                    ).where(attempts_table.c.batch_id == batch_id)
                )
            ).all()
    held = _most_at_once([(r.time_scheduled, r.end_time) for r in rows])
    running = _most_at_once([(r.start_time, r.end_time) for r in rows])
    assert running <= 4  # the worker starts a queued job only when a core frees
    assert held > 4  # the driver placed ahead of the worker's cores
    # the wait in the worker's queue is not billed: an attempt's time starts when it ran
    assert any(r.start_time - r.time_scheduled > 0.001 for r in rows)


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (an end at the same instant as a start comes first)."""
    events = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


async def test_the_dashboard_never_shows_more_cores_in_use_than_a_worker_has(tmp_path: Any) -> None:
    # Jobs queued ahead on a worker are Running in the table without holding a core.
    from sqlalchemy import update

    from app.engine.metrics import read_sample
    from app.engine.workers.instances import insert_instance
    from app.models.tables import Instance, Job, JobState

    url = f"sqlite:///{tmp_path / 'labbatch.db'}"
    async with engine(url, start=False) as eng:
        jobs = "\n".join(f"  - {{name: j{i}, command: 'true', cpu: 0.25}}" for i in range(10))
        batch_id = await eng.submit(f"version: 1\nname: stream\njobs:\n{jobs}\n")

        def place_all(conn: Any) -> None:
            insert_instance(conn, name="w", pool="local", cores_mcpu=1000, standing=True, now=0)
            conn.execute(update(Instance).values(state=str(InstanceState.ACTIVE)))
            conn.execute(
                update(Job)
                .where(Job.batch_id == batch_id)
                .values(state=JobState.RUNNING, instance_name="w")
            )

        await eng.db.run(place_all)
        sample = await eng.db.read(lambda conn: read_sample(conn, costs=False))
    assert sample.cores_in_use_mcpu == 1000  # ten jobs of 0.25 held by one core: four run
    assert sample.cores_free_mcpu == 0


async def test_jobs_queued_behind_long_ones_are_cancelled_before_they_start(tmp_path: Any) -> None:
    # a streak of short jobs opens the queue, then long ones fill the cores and the queue
    from app.engine.batches import frontend
    from tests.engine_helpers import USER, until

    url = f"sqlite:///{tmp_path / 'labbatch.db'}"
    async with engine(url, cores=1) as eng:  # four slots of 0.25 cores
        short = [f"  - {{name: s{i}, command: 'true', cpu: 0.25}}" for i in range(SHORT_STREAK + 4)]
        after = [f"s{i}" for i in range(SHORT_STREAK + 4)]
        long = [
            f"  - {{name: l{i}, command: 'sleep 30', cpu: 0.25, depends_on: {after}}}"
            for i in range(12)
        ]
        batch_id = await eng.submit("version: 1\nname: mixed\njobs:\n" + "\n".join(short + long))

        async def held_beyond_cores() -> bool:
            jobs = await eng.jobs(batch_id)
            return sum(j.state == "Running" for j in jobs.values()) > 4

        await until(held_beyond_cores, what="more long jobs placed than the worker has cores")
        await frontend.cancel_batch(eng.db, batch_id, user=USER)
        batch = await eng.wait(batch_id, timeout_s=15)
        jobs = await eng.jobs(batch_id)
        async with eng.db.connect() as conn:
            never_started = (
                await conn.execute(
                    select(attempts_table.c.job_id).where(
                        attempts_table.c.batch_id == batch_id,
                        attempts_table.c.start_time.is_(None),
                    )
                )
            ).all()
    assert batch.state == "cancelled"
    assert {jobs[f"l{i}"].state for i in range(12)} == {"Cancelled"}
    assert never_started  # those waiting in the worker's queue ended without running
