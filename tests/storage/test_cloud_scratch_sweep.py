"""The driver's sweep removes cloud scratch objects of deleted and expired batches, bounded per
pass, keeps those of batches that can still run, and logs (never raises) a cloud's refusal."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from app.engine.batches.cloud_scratch import remove_expired_cloud_files
from app.engine.workers import pools
from app.engine.workers.pools import PoolConfig
from app.models.db import DEFAULT_BILLING_PROJECT, Database, open_database
from app.models.tables import Batch, Pool
from tests.storage.emulators import (
    AZURITE_API_VERSION,
    AZURITE_KEY,
    Azurite,
    Gcs,
)
from tests.storage.helpers import (
    blob_storage,
    gce_scratch_pool,
    gcs_storage,
    new_bucket,
    new_container,
)

pytestmark = pytest.mark.timeout(120)
HOUR_S = 3600.0


async def _batch(
    db: Database, *, ended: float | None = None, deleted: bool = False, running: bool = False
) -> int:
    values = {
        "user": "alice",
        "billing_project": DEFAULT_BILLING_PROJECT,
        "name": "b",
        "time_created": time.time() - 10 * HOUR_S,
        "complete": not running,
        "time_completed": None if running else ended,
        "deleted": deleted,
    }
    result = await db.run(lambda conn: conn.execute(insert(Batch).values(**values)))
    return int(result.inserted_primary_key[0])


async def test_gcs_sweep_removes_deleted_and_expired_batches_a_bounded_pass_at_a_time(
    gcs_emulator: Gcs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    now = time.time()
    db = await open_database(f"sqlite:///{tmp_path}/lb.db")
    try:
        pool = replace(gce_scratch_pool(gcs_emulator, f"gs://{bucket}/lab"), retention_s=HOUR_S)
        await pools.create_pool(db, pool)
        # a second pool whose bucket went away: the sweep says so and goes on with the first
        await pools.create_pool(db, replace(pool, name="a-gone"))
        await db.run(
            lambda conn: conn.execute(
                update(Pool).where(Pool.name == "a-gone").values(scratch="gs://no-such-bucket/x")
            )
        )
        expired = await _batch(db, ended=now - 2 * HOUR_S)
        recent = await _batch(db, ended=now - HOUR_S / 2)
        running = await _batch(db, running=True)  # not ended (or retried): it may need them
        deleted = await _batch(db, ended=now - 60, deleted=True)
        unknown = 9999  # another database's batch (a shared bucket): never this one's to delete
        names = [
            f"lab/{expired}/1/out.txt",
            f"lab/{expired}/2/x.bam",
            f"lab/{expired}/3/y.bam",
            f"lab/{recent}/1/out.txt",
            f"lab/{running}/1/out.txt",
            f"lab/{deleted}/1/out.txt",
            f"lab/{unknown}/1/out.txt",
            "lab/notes/readme.txt",
            f"inputs/{expired}/ref.fa",
        ]
        for name in names:
            storage.client().bucket(bucket).blob(name).upload_from_string(b"x")

        with caplog.at_level(logging.WARNING, logger="labbatch.files"):
            assert await remove_expired_cloud_files(db, now=now, max_objects=2) == 2
        assert "pool a-gone: could not list its scratch gs://no-such-bucket/x" in caplog.text
        assert await remove_expired_cloud_files(db, now=now, max_objects=2) == 2
        assert await remove_expired_cloud_files(db, now=now) == 0
    finally:
        await db.close()
    left = sorted(b.name for b in storage.client().list_blobs(bucket))
    assert left == sorted(
        [
            f"inputs/{expired}/ref.fa",
            f"lab/{recent}/1/out.txt",
            f"lab/{running}/1/out.txt",
            f"lab/{unknown}/1/out.txt",
            "lab/notes/readme.txt",
        ]
    )


async def test_azure_sweep_removes_a_deleted_batch_and_keeps_a_running_one(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", AZURITE_KEY)
    storage = blob_storage(azurite)
    root = new_container(storage)
    container = storage.service(root.split("/")[2]).get_container_client(root.split("/")[3])
    config = {
        "subscription_id": "00000000-0000-0000-0000-000000000000",
        "resource_group": "rg",
        "location": "westeurope",
        "subnet_id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
        "/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default",
        "allow_from": ["203.0.113.7/32"],
        "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test",
        "storage": {"endpoint": azurite.account_url, "api_version": AZURITE_API_VERSION},
    }
    pool = PoolConfig(
        name="az",
        cloud="azure",
        machine_type="Standard_D2s_v3",
        worker_cores_mcpu=2000,
        config=config,
        scratch=f"{root}/scratch",
        retention_s=HOUR_S,
    )
    db = await open_database(f"sqlite:///{tmp_path}/lb.db")
    try:
        await pools.create_pool(db, pool)
        deleted = await _batch(db, ended=time.time(), deleted=True)
        expired = await _batch(db, ended=time.time() - 2 * HOUR_S)
        running = await _batch(db, running=True)
        for name in (
            f"scratch/{deleted}/1/o.txt",
            f"scratch/{deleted}/2/o.txt",
            f"scratch/{expired}/1/o.txt",
            f"scratch/{running}/1/o.txt",
            f"other/{deleted}/keep.txt",
        ):
            container.upload_blob(name, b"x")
        assert await remove_expired_cloud_files(db) == 3
    finally:
        await db.close()
    left = sorted(container.list_blob_names())
    assert left == [f"other/{deleted}/keep.txt", f"scratch/{running}/1/o.txt"]


async def test_the_driver_sweeps_cloud_scratch_when_it_starts(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    from tests.clouds.pool_helpers import fake_gce, gce_pool
    from tests.engine_helpers import engine, until

    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    url = f"sqlite:///{tmp_path}/lb.db"
    async with fake_gce(tmp_path) as (_gce, endpoint), engine(url, start=False) as eng:
        pool = gce_pool(endpoint)
        pool.config["storage"] = {"endpoint": gcs_emulator.endpoint}
        await pools.create_pool(eng.db, replace(pool, scratch=f"gs://{bucket}/lab"))
        deleted = await _batch(eng.db, ended=time.time(), deleted=True)
        kept = await _batch(eng.db, ended=time.time())
        for batch_id in (deleted, kept):
            storage.client().bucket(bucket).blob(f"lab/{batch_id}/1/o").upload_from_string(b"x")
        assert await eng.runtime.start()

        async def swept() -> bool:
            return [b.name for b in storage.client().list_blobs(bucket)] == [f"lab/{kept}/1/o"]

        await until(swept, timeout_s=30, what="the driver's first files sweep")
