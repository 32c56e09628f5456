"""Before a batch runs, files in another region or another cloud are named with their egress."""

from __future__ import annotations

from app.engine.billing.egress import egress_warnings
from tests.storage.emulators import Gcs
from tests.storage.helpers import gcs_storage, new_bucket


async def test_egress_warnings_for_other_regions_and_clouds(gcs_emulator: Gcs) -> None:
    bucket = new_bucket(gcs_storage(gcs_emulator))  # the emulator's buckets live in "US"
    config = {"project": "test", "storage": {"endpoint": gcs_emulator.endpoint}}
    files = [
        f"gs://{bucket}/in/ref.fa",
        f"gs://{bucket}/in/other.fa",  # one warning per bucket
        "az://labdata/runs/x.bam",
        "/home/me/local.txt",
    ]
    far = await egress_warnings("gce", "gcp", ["europe-west1"], config, files)
    assert len(far) == 2
    assert f"bucket {bucket} keeps its data in us" in far[0] and "egress" in far[0]
    assert far[1].startswith("https://labdata.blob.core.windows.net/runs/x.bam: in Azure Blob")
    near = await egress_warnings("gce", "gcp", ["us-central1"], config, files[:2])
    assert near == []
    assert await egress_warnings("local", "local", None, {}, files) == []
