"""Deleting a batch removes its files from a cloud pool's scratch bucket, and nothing else."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app.engine.batches.cloud_scratch import remove_cloud_batch_files
from app.engine.workers import pools
from app.models.db import open_database
from tests.storage.emulators import Gcs
from tests.storage.helpers import gce_scratch_pool, gcs_storage, new_bucket


async def test_a_deleted_batch_leaves_no_object_in_scratch(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    for name in ("lab/5/1/out.txt", "lab/5/2/x.bam", "lab/50/1/out.txt", "inputs/5/ref.fa"):
        storage.client().bucket(bucket).blob(name).upload_from_string(b"x")
    db = await open_database(f"sqlite:///{tmp_path}/lb.db")
    try:
        await pools.create_pool(
            db, replace(gce_scratch_pool(gcs_emulator, f"gs://{bucket}/lab"), name="a")
        )
        await pools.create_pool(
            db, replace(gce_scratch_pool(gcs_emulator, f"gs://{bucket}/lab/"), name="b")
        )
        assert await remove_cloud_batch_files(db, 5) == 2
    finally:
        await db.close()
    left = sorted(b.name for b in storage.client().list_blobs(bucket))
    assert left == ["inputs/5/ref.fa", "lab/50/1/out.txt"]
