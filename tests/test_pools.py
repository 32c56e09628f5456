"""Pools with real worker processes: fair share between users, autoscaling, scaling by hand."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from app.engine.batches import frontend
from app.engine.scheduler.why import explain
from app.engine.workers import pools
from app.errors import ConfigError
from app.models.tables import Job, JobState
from tests.engine_helpers import dag, engine, until


async def running_mcpu(eng: object, user: str) -> int:
    async with eng.db.connect() as conn:  # type: ignore[attr-defined]
        total = await conn.execute(
            select(func.coalesce(func.sum(Job.cores_mcpu), 0)).where(
                Job.user == user, Job.state == JobState.RUNNING
            )
        )
        return int(total.scalar_one())


def sleepers(name: str, n: int, *, seconds: float, cpu: float, pool: str | None = None) -> str:
    where = f", pool: {pool}" if pool else ""
    jobs = "\n".join(
        f"  - {{name: s{i}, command: 'sleep {seconds}', cpu: {cpu}{where}}}" for i in range(n)
    )
    return f"version: 1\nname: {name}\njobs:\n{jobs}\n"


async def test_a_second_user_gets_its_share_without_waiting_for_the_first(db_url: str) -> None:
    async with engine(db_url, cores=2) as eng:
        alice = await frontend.submit_batch(
            eng.db, dag(sleepers("alice", 16, seconds=1.2, cpu=0.5)), user="alice"
        )
        eng.runtime.notify_changed()

        async def alice_fills_the_worker() -> bool:
            return await running_mcpu(eng, "alice") == 2000

        await until(alice_fills_the_worker, what="alice to fill the worker")
        bob = await frontend.submit_batch(
            eng.db, dag(sleepers("bob", 16, seconds=1.2, cpu=0.5)), user="bob"
        )
        eng.runtime.notify_changed()

        async def equal_shares() -> bool:
            return await running_mcpu(eng, "bob") == 1000 == await running_mcpu(eng, "alice")

        # FIFO would keep bob waiting for all 16 of alice's jobs (~5 s); fair share gives him
        # half the worker as soon as alice's first jobs end.
        await until(equal_shares, timeout_s=4, what="alice and bob at one core each")
        assert (await frontend.get_batch(eng.db, alice)).n_completed < 16
        ready = await frontend.list_jobs(eng.db, bob, state="ready")
        if ready:
            reason = await explain(eng.db, bob, ready[0].name)
            assert any(
                text in reason
                for text in ("fair share", "next scheduling pass", "waiting for running jobs")
            ), reason
        assert (await eng.wait(alice, 30)).state == "success"
        assert (await eng.wait(bob, 30)).state == "success"


async def test_autoscaler_creates_within_limits_and_idle_workers_retire(db_url: str) -> None:
    async with engine(db_url, cores=1) as eng:
        await pools.create_pool(
            eng.db,
            pools.PoolConfig(
                name="burst",
                worker_cores_mcpu=1000,
                min_instances=0,
                max_instances=3,
                max_live_instances=3,
                idle_timeout_s=1.5,
                boot_time_s=0.3,
            ),
        )
        eng.runtime.notify_changed()
        batch = await frontend.submit_batch(
            eng.db, dag(sleepers("wide", 6, seconds=1.5, cpu=1, pool="burst")), user="tester"
        )
        eng.runtime.notify_changed()
        seen: set[int] = set()

        async def three_workers() -> bool:
            n = len(await pools.pool_instances(eng.db, "burst"))
            seen.add(n)
            return n == 3

        await until(three_workers, timeout_s=15, what="three burst workers")
        assert (await eng.wait(batch, 30)).state == "success"
        assert max(seen) == 3  # never above max_instances

        async def all_deleted() -> bool:
            every = await pools.pool_instances(eng.db, "burst", live_only=False)
            return all(i.state == "deleted" for i in every)

        await until(all_deleted, timeout_s=15, what="idle burst workers to retire")
        gone = await pools.pool_instances(eng.db, "burst", live_only=False)
        assert any("idle" in (i.reason or "") for i in gone)


async def test_min_instances_and_scaling_by_hand(db_url: str) -> None:
    async with engine(db_url, cores=1) as eng:
        await pools.create_pool(
            eng.db,
            pools.PoolConfig(
                name="lab",
                worker_cores_mcpu=500,
                min_instances=1,
                max_instances=4,
                max_live_instances=4,
                idle_timeout_s=600,
            ),
        )
        eng.runtime.notify_changed()

        def live_is(n: int):
            async def check() -> bool:
                return await pools.count_live(eng.db, "lab") == n

            return check

        await until(live_is(1), timeout_s=15, what="the standing worker")
        await pools.scale_pool(eng.db, "lab", 3)
        eng.runtime.notify_changed()
        await until(live_is(3), timeout_s=15, what="scaling up to 3")
        await pools.scale_pool(eng.db, "lab", 1)
        eng.runtime.notify_changed()
        await until(live_is(1), timeout_s=15, what="draining down to 1")
        with pytest.raises(ConfigError, match="can scale to 1"):
            await pools.scale_pool(eng.db, "lab", 0)
        with pytest.raises(ConfigError, match="min instances <= max live"):
            await pools.set_pool(eng.db, "lab", min_instances=5)


async def test_jobs_naming_a_machine_type_get_a_worker_of_their_own(db_url: str) -> None:
    async with engine(db_url, cores=1) as eng:
        batch = await eng.submit(
            """
            version: 1
            jobs:
              - {name: big-a, command: 'sleep 0.5', cpu: 2, machine_type: local-2}
              - {name: big-b, command: 'sleep 0.5', cpu: 2, machine_type: local-2}
              - {name: small, command: 'true', cpu: 0.25}
            """
        )
        states: set[str] = set()

        async def done() -> bool:
            states.add(await eng.job_state(batch, "big-a"))
            return (await frontend.get_batch(eng.db, batch)).complete

        await until(done, timeout_s=30, what="the batch")
        assert (await frontend.get_batch(eng.db, batch)).state == "success"
        assert "Creating" in states  # waited for its own worker to boot
        jobs = await eng.jobs(batch)
        a, b = jobs["big-a"].instance_name, jobs["big-b"].instance_name
        assert a and b and a != b and a.startswith("job-private-")
        assert not (jobs["small"].instance_name or "").startswith("job-private-")

        async def workers_gone() -> bool:
            live = await pools.pool_instances(eng.db, "job-private")
            return not live

        await until(workers_gone, timeout_s=15, what="job-private workers to retire")
        gone = await pools.pool_instances(eng.db, "job-private", live_only=False)
        assert {i.name for i in gone} >= {a, b}
        assert all(i.cores_mcpu == 2000 for i in gone if i.name in (a, b))


async def test_scale_to_n_holds_and_never_retires_a_busy_worker(db_url: str) -> None:
    """Scale to 2 with 3 busy workers and jobs waiting: nothing busy stops, the autoscaler
    starts no replacement, the pool shrinks as workers fall idle and stays at 2 until the
    target is released."""
    async with engine(db_url, cores=1) as eng:
        lab = pools.PoolConfig(
            name="lab", worker_cores_mcpu=1000, max_instances=3, max_live_instances=3
        )
        await pools.create_pool(eng.db, replace(lab, idle_timeout_s=600))
        eng.runtime.notify_changed()

        async def live() -> int:
            return await pools.count_live(eng.db, "lab")

        async def running() -> int:
            jobs = await eng.jobs(batch)
            return sum(j.state == "Running" for j in jobs.values())

        batch = await eng.submit(sleepers("busy", 6, seconds=60, cpu=1, pool="lab"))

        async def three_busy() -> bool:
            return await running() == 3

        await until(three_busy, timeout_s=30, what="three busy workers")
        await pools.scale_pool(eng.db, "lab", 2)
        eng.runtime.notify_changed()
        await asyncio.sleep(3)  # an observation window: nothing may happen in it
        assert await live() == 3 and await running() == 3
        attempts = {j.name: j.n_attempts for j in (await eng.jobs(batch)).values()}
        assert set(attempts.values()) <= {0, 1}  # no job was stopped and started again
        assert (await pools.get_pool(eng.db, "lab")).scale_target == 2

        await frontend.cancel_batch(eng.db, batch)  # the jobs end: workers fall idle
        eng.runtime.notify_changed()

        async def two_live() -> bool:
            return await live() == 2

        await until(two_live, timeout_s=30, what="an idle worker to retire")
        waiting = await eng.submit(sleepers("more", 4, seconds=60, cpu=1, pool="lab"))
        await asyncio.sleep(3)  # the autoscaler would add a third worker now
        assert await live() == 2
        await pools.release_scale(eng.db, "lab")
        eng.runtime.notify_changed()

        async def three_live() -> bool:
            return await live() == 3

        await until(three_live, timeout_s=30, what="the autoscaler, released")
        await frontend.cancel_batch(eng.db, waiting)


async def test_new_limits_release_the_target_and_drain_keeps_nothing(db_url: str) -> None:
    async with engine(db_url, cores=1) as eng:
        await pools.create_pool(
            eng.db, pools.PoolConfig(name="lab", max_instances=3, max_live_instances=3)
        )
        held = await pools.scale_pool(eng.db, "lab", 2)
        assert held.scale_target == 2
        assert (await pools.set_pool(eng.db, "lab", price_per_core_hour_usd=None)).scale_target == 2
        assert (await pools.set_pool(eng.db, "lab", max_instances=4)).scale_target is None
        await pools.set_pool(eng.db, "lab", min_instances=0, max_live_instances=0)
        with pytest.raises(ConfigError, match=r"drained.*Limits form"):
            await pools.scale_pool(eng.db, "lab", 2)
