"""A cloud pool's scratch location is checked against the cloud before the pool is stored."""

from __future__ import annotations

import pytest

from app.engine.workers.pools import PoolConfig
from app.engine.workers.scratch_check import check_scratch
from app.errors import ConfigError
from tests.clouds.pool_helpers import azure_pool
from tests.storage.emulators import Azurite, Gcs
from tests.storage.helpers import (
    blob_storage,
    gce_scratch_pool,
    gcs_storage,
    new_bucket,
    new_container,
)


async def test_gce_scratch_exists_is_writable_and_near(gcs_emulator: Gcs) -> None:
    bucket = new_bucket(gcs_storage(gcs_emulator))
    near = await check_scratch(gce_scratch_pool(gcs_emulator, f"gs://{bucket}/scratch"))
    assert near is not None and near.ok and near.warnings == ()
    far = await check_scratch(
        gce_scratch_pool(gcs_emulator, f"gs://{bucket}/scratch", "europe-west4-b")
    )
    assert far is not None and "egress" in far.warnings[0]
    with pytest.raises(ConfigError, match="no bucket named no-such-bucket"):
        await check_scratch(gce_scratch_pool(gcs_emulator, "gs://no-such-bucket/scratch"))
    with pytest.raises(ConfigError, match="keeps its files in gs://"):
        await check_scratch(gce_scratch_pool(gcs_emulator, "/home/me/scratch"))
    assert await check_scratch(gce_scratch_pool(gcs_emulator, None)) is None


async def test_azure_scratch_in_a_missing_container_is_refused(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.storage.emulators import AZURITE_API_VERSION, AZURITE_KEY

    monkeypatch.setenv("AZURE_STORAGE_KEY", AZURITE_KEY)
    root = new_container(blob_storage(azurite))

    def pool(scratch: str) -> PoolConfig:
        storage = {"endpoint": azurite.account_url, "api_version": AZURITE_API_VERSION}
        # the ARM endpoint is never called: the check talks to storage only
        return azure_pool("http://127.0.0.1:9", extra_config={"storage": storage}, scratch=scratch)

    ok = await check_scratch(pool(f"{root}/scratch"))
    assert ok is not None and ok.ok
    with pytest.raises(ConfigError, match="no container named nothere"):
        await check_scratch(pool(root.rsplit("/", 1)[0] + "/nothere/scratch"))
