"""Billing with real workers: exact cost per attempt, versioned prices, limits, estimates."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.engine import browse
from app.engine import driver as driver_module
from app.engine.batches import frontend
from app.engine.billing import costs, projects
from app.engine.workers import pools
from app.errors import UserError
from app.models.tables import Attempt, Resource
from tests.engine_helpers import USER, dag, engine, until

PRICE = Decimal("3.6")  # USD per core-hour: a millidollar per core-second


async def attempt_seconds(db: object, batch_id: int) -> dict[int, float]:
    async with db.connect() as conn:  # type: ignore[attr-defined]
        rows = await conn.execute(
            select(Attempt.job_id, Attempt.start_time, Attempt.end_time).where(
                Attempt.batch_id == batch_id
            )
        )
        return {job: end - start for job, start, end in rows}


async def test_cost_is_quantity_times_rate_times_duration(db_url: str) -> None:
    async with engine(db_url, cores=2) as eng:
        await pools.set_pool(eng.db, "local", price_per_core_hour_usd=PRICE)
        eng.runtime.notify_changed()
        await until(_rates_loaded(eng), what="the new price")
        batch = await eng.submit(
            "version: 1\njobs:\n"
            "  - {name: one, command: 'sleep 0.3', cpu: 1}\n"
            "  - {name: half, command: 'sleep 0.3', cpu: 0.5}\n"
        )
        await eng.wait(batch)
        seconds = await attempt_seconds(eng.db, batch)
        by_job = await eng.db.run(lambda c: costs.costs_by(c, "job", batch_id=batch))
        for job_id, cores in ((1, Decimal(1)), (2, Decimal("0.5"))):
            expected = cores * PRICE * Decimal(str(seconds[job_id])) / 3600
            assert abs(by_job[job_id] - expected) < Decimal("0.000002"), (job_id, by_job)
        by_batch = await eng.db.run(lambda c: costs.costs_by(c, "batch"))
        assert abs(by_batch[batch] - sum(by_job.values())) <= Decimal("1e-8")

        # a new price is a new version: the finished attempts keep the old one
        await pools.set_pool(eng.db, "local", price_per_core_hour_usd=PRICE * 10)
        eng.runtime.notify_changed()
        await until(_rates_loaded(eng, PRICE * 10), what="the second price")
        later = await eng.submit("version: 1\njobs: [{name: x, command: 'sleep 0.3', cpu: 1}]\n")
        await eng.wait(later)
        again = await eng.db.run(lambda c: costs.costs_by(c, "batch"))
        assert again[batch] == by_batch[batch]
        x_seconds = (await attempt_seconds(eng.db, later))[1]
        assert abs(again[later] - PRICE * 10 * Decimal(str(x_seconds)) / 3600) < Decimal("1e-5")


async def test_a_workers_cost_so_far_is_its_attempts_at_the_prices_they_ran_at(
    db_url: str,
) -> None:
    async with engine(db_url, cores=2) as eng:
        await pools.set_pool(eng.db, "local", price_per_core_hour_usd=PRICE)
        eng.runtime.notify_changed()
        await until(_rates_loaded(eng), what="the new price")
        batch = await eng.submit("version: 1\njobs: [{name: a, command: 'sleep 0.3', cpu: 1}]\n")
        await eng.wait(batch)
        billed = (await eng.db.run(lambda c: costs.costs_by(c, "batch")))[batch]
        assert billed > 0

        async def worker_cost() -> Decimal:
            (local,) = [
                row for row in await browse.pools_with_instances(eng.db) if row.pool.name == "local"
            ]
            (worker,) = local.instances
            return worker.cost_usd

        assert await worker_cost() == billed  # as `labbatch cost` counts it
        await pools.set_pool(eng.db, "local", price_per_core_hour_usd=None)  # free from now on
        eng.runtime.notify_changed()
        await until(_rates_loaded(eng, Decimal(0)), what="the free price")
        assert await worker_cost() == billed  # not recomputed at today's price


def _rates_loaded(eng: object, price: Decimal = PRICE):
    async def check() -> bool:
        # the driver stores the rates of the pools it loaded as versioned resource rows
        async with eng.db.connect() as conn:  # type: ignore[attr-defined]
            rows = await conn.execute(select(Resource.usd_per_unit_hour))
            return any(Decimal(str(r)) == price for (r,) in rows)

    return check


async def test_limits_refuse_new_batches_and_cancel_running_ones(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver_module, "BILLING_CHECK_S", 0.3)
    async with engine(db_url, cores=2) as eng:
        await pools.set_pool(eng.db, "local", price_per_core_hour_usd=Decimal(360))  # 0.1 $/s
        await projects.create_project(eng.db, "grant", limit_usd=Decimal("0.05"), users=(USER,))
        eng.runtime.notify_changed()
        # an attempt is billed at the rates of its start: let the driver load the new price
        await until(_rates_loaded(eng, Decimal(360)), what="the new price")
        text = "version: 1\nbilling_project: grant\njobs: [{name: long, command: 'sleep 30'}]\n"
        batch = await eng.submit(text)
        done = await eng.wait(batch, timeout_s=20)  # cancelled once it costs 5 cents
        assert done.cancelled and done.state == "cancelled"
        spent = (await projects.list_projects(eng.db))[-1]
        assert spent.name == "grant" and spent.over_limit
        with pytest.raises(UserError, match=r"has spent .* of its \$0.05 limit"):
            await frontend.submit_batch(eng.db, dag(text), user=USER)
        with pytest.raises(UserError, match="not a member"):
            await frontend.submit_batch(eng.db, dag(text), user="eve")


async def test_estimate_is_within_10_percent_of_the_actual_cost(db_url: str) -> None:
    async with engine(db_url, cores=2) as eng:
        await pools.set_pool(eng.db, "local", price_per_core_hour_usd=PRICE)
        eng.runtime.notify_changed()
        await until(_rates_loaded(eng), what="the new price")
        jobs = "\n".join(
            f"  - {{name: j{i}, command: 'sleep 0.5', cpu: 0.5, expected_duration: 0.5}}"
            for i in range(8)
        )
        spec = dag(f"version: 1\nname: fixed\njobs:\n{jobs}\n")
        pool = await pools.get_pool(eng.db, "local")
        estimate = costs.estimate_on_pool(spec.jobs, replace(pool, max_instances=1))
        batch = await frontend.submit_batch(eng.db, spec, user=USER)
        eng.runtime.notify_changed()
        await eng.wait(batch)
        actual = (await eng.db.run(lambda c: costs.costs_by(c, "batch")))[batch]
        assert estimate.cost_usd_low <= estimate.cost_usd_high
        middle = (estimate.cost_usd_low + estimate.cost_usd_high) / 2
        assert abs(actual - middle) <= Decimal("0.1") * actual, (actual, estimate)
