"""In a lab database a local pool runs only its driver's user's jobs, unless that user shares it
(`labbatch pool set local --shared`): the jobs run under that user's OS account."""

from __future__ import annotations

import pytest

from app.engine.batches import frontend
from app.engine.events import EventBus
from app.engine.runtime import LocalRuntime
from app.engine.scheduler import why
from app.engine.workers import pools, sharing
from app.errors import ConfigError
from app.models.db import open_database
from tests.engine_helpers import dag, until

GCP = {"project": "lab-project", "zones": ["us-central1-a"], "allow_from": ["10.0.0.0/8"]}
JOB = "version: 1\nname: {name}\njobs: [{{name: j, command: 'true'}}]\n"


@pytest.mark.postgres
async def test_local_pool_runs_only_its_owners_jobs_until_shared(pg_url: str) -> None:
    db = await open_database(pg_url)
    runtime = LocalRuntime(db, bus=EventBus(), user="alice")
    try:
        assert await runtime.start()
        bobs = await frontend.submit_batch(db, dag(JOB.format(name="bobs")), user="bob")
        alices = await frontend.submit_batch(db, dag(JOB.format(name="alices")), user="alice")
        runtime.notify_changed()

        async def complete(batch_id: int) -> bool:
            return (await frontend.get_batch(db, batch_id)).complete

        await until(lambda: complete(alices), what="alice's batch")
        assert (await frontend.find_job(db, bobs, "j")).state == "Ready"
        assert "runs on alice's machine and only alice's jobs" in await why.explain(db, bobs, "j")

        await sharing.share(db, "local", "bob", shared=True)  # bob does not drive: no effect
        runtime.notify_changed()
        await sharing.share(db, "local", "alice", shared=True)
        await until(lambda: complete(bobs), what="bob's batch once alice shares the pool")
        shared = await pools.get_pool(db, "local")
        assert shared.config[sharing.SHARED_BY] == ["alice", "bob"]
        await sharing.share(db, "local", "alice", shared=False)
        assert (await pools.get_pool(db, "local")).config[sharing.SHARED_BY] == ["bob"]
    finally:
        await runtime.stop()
        await db.close()


async def test_only_local_pools_are_shared(db_url: str) -> None:
    db = await open_database(db_url)
    try:
        gcp = pools.PoolConfig(
            name="gpu",
            cloud="gcp",
            machine_type="e2-standard-2",
            worker_cores_mcpu=2000,
            config=GCP,
        )
        await pools.create_pool(db, gcp)
        with pytest.raises(ConfigError, match="--shared is a setting of local pools"):
            await sharing.share(db, "gpu", "alice", shared=True)
        local = await pools.get_pool(db, "local")
        # a user's own SQLite file is no lab: the local pool runs every user's jobs
        assert sharing.runs_only(local, "alice", lab=sharing.is_lab(db)) == (
            "alice" if sharing.is_lab(db) else None
        )
    finally:
        await db.close()
