"""Object storage by cloud, loaded on first use: the StorageSigner of a pool.

A cloud pool keeps its storage settings in one ``storage`` entry of its ``config``:
- GCE: ``signing_service_account`` (sign URLs as this account through IAM signBlob when the
  user's credentials hold no key), ``user_project`` (bill requester-pays buckets to it),
  ``endpoint`` and ``iam_endpoint`` (another API address: the emulator in tests).
- Azure: ``endpoint`` (another blob endpoint: Azurite in tests), ``api_version``.
Credentials are never stored: Application Default Credentials for Google; for Azure
DefaultAzureCredential (user-delegation SAS), or an account key in ``AZURE_STORAGE_KEY``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, cast

from app.clouds.base import StorageSigner
from app.models.locations import LocationError, StorageKind, parse_cloud

STORAGE_KEY = "storage"
STORAGE_OF_CLOUD = {"gcp": StorageKind.GCS, "azure": StorageKind.AZURE}
_SETTINGS = {
    "gcp": ("signing_service_account", "user_project", "endpoint", "iam_endpoint"),
    "azure": ("endpoint", "api_version"),
}


def make_storage(cloud: str, config: Mapping[str, Any]) -> StorageSigner:
    """The StorageSigner of a pool of ``cloud`` with these settings."""
    settings = dict(config.get(STORAGE_KEY) or {})
    if cloud == "gcp":
        gcs = importlib.import_module("app.clouds.gcp.storage")
        made = gcs.GcsStorage(gcs.GcsSettings(project=config.get("project"), **settings))
    elif cloud == "azure":
        blob = importlib.import_module("app.clouds.azure.storage")
        made = blob.BlobStorage(blob.BlobSettings(**settings))
    else:
        raise ValueError(f"cloud {cloud!r} has no object storage")
    return cast(StorageSigner, made)


def storage_problems(cloud: str, scratch: str | None, config: Mapping[str, Any]) -> list[str]:
    """What is wrong with a pool's scratch location and storage settings, without asking the
    cloud: a cloud pool needs a scratch location in its own cloud's storage."""
    problems = []
    settings = config.get(STORAGE_KEY) or {}
    if not isinstance(settings, Mapping):
        return [f"setting {STORAGE_KEY!r} must be a mapping"]
    unknown = sorted(str(k) for k in settings if k not in _SETTINGS.get(cloud, ()))
    if unknown:
        accepted = ", ".join(_SETTINGS.get(cloud, ()))
        problems.append(f"unknown storage setting(s) {', '.join(unknown)}; accepted: {accepted}")
    want = STORAGE_OF_CLOUD.get(cloud)
    if want is None:
        return problems
    example = (
        "gs://<bucket>/<prefix>"
        if want is StorageKind.GCS
        else "az://<account>/<container>/<prefix>"
    )
    if not scratch:
        problems.append(f"a {cloud} pool needs a scratch location in its own cloud ({example})")
        return problems
    try:
        where = parse_cloud(scratch)
    except LocationError as exc:
        return [*problems, f"scratch: {exc}"]
    if where is None or where.kind is not want:
        problems.append(f"scratch {scratch}: a {cloud} pool keeps its files in {example}")
    return problems
