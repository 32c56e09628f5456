"""Makers the storage tests share: a pool's storage on an emulator, a fresh bucket or container,
and a GCE pool config with a scratch location."""

from __future__ import annotations

import uuid

from google.oauth2 import service_account

from app.clouds.azure.storage import BlobSettings, BlobStorage
from app.clouds.gcp.storage import GcsSettings, GcsStorage
from app.engine.workers.pools import PoolConfig
from tests.storage.emulators import (
    AZURITE_ACCOUNT,
    AZURITE_API_VERSION,
    AZURITE_KEY,
    Azurite,
    Gcs,
)
from tests.storage.keys import service_account_info


def gcs_storage(gcs: Gcs, **settings: str) -> GcsStorage:
    """The storage of a GCE pool whose endpoint is the emulator, signing with a test key."""
    sa = service_account.Credentials.from_service_account_info(service_account_info())
    return GcsStorage(
        GcsSettings(project="test", endpoint=gcs.endpoint, **settings), credentials=sa
    )


def new_bucket(storage: GcsStorage) -> str:
    """A fresh bucket in the emulator; returns its name."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    storage.client().create_bucket(name)
    return name


def blob_storage(server: Azurite) -> BlobStorage:
    """The storage of an Azure pool whose account is Azurite's, signing with its account key."""
    return BlobStorage(
        BlobSettings(endpoint=server.account_url, api_version=AZURITE_API_VERSION),
        credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
    )


def new_container(storage: BlobStorage) -> str:
    """A fresh container in Azurite; returns its az:// location."""
    name = f"c{uuid.uuid4().hex[:12]}"
    storage.service(AZURITE_ACCOUNT).create_container(name)
    return f"az://{AZURITE_ACCOUNT}/{name}"


def gce_scratch_pool(gcs: Gcs, scratch: str | None, zone: str = "us-central1-a") -> PoolConfig:
    """A GCE pool config whose storage is the emulator and whose scratch is ``scratch``."""
    config = {
        "project": "test",
        "zones": [zone],
        "allow_from": ["203.0.113.7/32"],
        "storage": {"endpoint": gcs.endpoint},
    }
    return PoolConfig(
        name="gce",
        cloud="gcp",
        machine_type="e2-standard-2",
        worker_cores_mcpu=2000,
        config=config,
        scratch=scratch,
    )
