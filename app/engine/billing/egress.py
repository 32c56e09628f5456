"""Warn before a batch runs when its files cross regions or clouds: egress is billed per GB.

A cloud pool reading a bucket in another region, or another cloud's storage, pays the storage's
network egress for every byte (results written across regions too). LabBatch does not price
those bytes (it does not know the files' sizes before they are read); it says so up front.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.clouds.storage import STORAGE_OF_CLOUD, make_storage
from app.errors import LabBatchError
from app.models.locations import LocationError, StorageKind, parse_cloud
from app.models.spec import BatchSpec

# list prices, rounded: what a GB costs to leave a cloud for the internet (another cloud)
INTERNET_EGRESS_USD_PER_GB = {StorageKind.GCS: "0.08-0.12", StorageKind.AZURE: "0.05-0.09"}
_NAMES = {StorageKind.GCS: "Google Cloud Storage", StorageKind.AZURE: "Azure Blob storage"}


async def egress_warnings(
    pool: str,
    cloud: str,
    regions: Sequence[str] | None,
    config: Mapping[str, Any],
    locations: Iterable[str],
) -> list[str]:
    """One warning per bucket or container a pool's jobs would reach across regions or clouds
    (``regions``: the pool's, as stored; ``config``: its cloud settings)."""
    own = STORAGE_OF_CLOUD.get(cloud)
    if own is None:  # local pools cannot read cloud storage at all (the attempt says so)
        return []
    region = regions[0] if regions else None
    warnings: list[str] = []
    seen: set[tuple[str | None, str]] = set()
    for text in locations:
        try:
            where = parse_cloud(text)
        except LocationError:
            continue
        if where is None or (where.account, where.bucket) in seen:
            continue
        seen.add((where.account, where.bucket))
        if where.kind is not own:
            warnings.append(
                f"{where}: in {_NAMES[where.kind]}, which pool {pool} ({cloud}) reaches "
                f"over the internet: about ${INTERNET_EGRESS_USD_PER_GB[where.kind]} per GB of "
                "egress, billed by that cloud"
            )
        elif region is not None:
            try:
                warning = await make_storage(cloud, config).egress_warning(str(where), region)
            except LabBatchError:
                continue
            if warning:
                warnings.append(warning)
    return warnings


def batch_locations(spec: BatchSpec) -> list[str]:
    """A batch's input locations and output destinations."""
    found = [out.to for out in spec.outputs]
    for value in spec.inputs.values():
        found += [value] if isinstance(value, str) else list(value.values())
    return found
