"""A batch's files in buckets, seen from this machine: their sizes, and copying one here.

Both go through the storage SDK of the pool the file belongs to (``app.clouds``, with the
user's own credentials), never through a worker. A file's pool is the pool whose scratch keeps
it, or for a batch output's destination the job's pool; when that pool is of another cloud,
the first pool of the location's cloud lends its settings (endpoint, requester-pays project),
and with none the cloud's defaults are used.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.clouds.base import ObjectStat, StorageSigner
from app.clouds.storage import STORAGE_OF_CLOUD, make_storage
from app.errors import LabBatchError, NotFoundError, UserError
from app.models.locations import LocationError, parse_cloud

CLOUD_OF_STORAGE = {kind: cloud for cloud, kind in STORAGE_OF_CLOUD.items()}
STAT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class CloudSize:
    """One cloud file's size (None: not there), or why it could not be read."""

    size_bytes: int | None
    problem: str | None = None


class Storages:
    """The storage of each (cloud, pool settings) a batch's files need, made once."""

    def __init__(self, pools: Mapping[str, Any]) -> None:
        self._pools = pools  # name -> an object with .cloud and .config
        self._made: dict[tuple[str, str], StorageSigner] = {}

    def for_location(self, location: str, pool: str | None) -> StorageSigner:
        """The storage that reads ``location``; ``pool`` is the pool the file belongs to."""
        try:
            where = parse_cloud(location)
        except LocationError as exc:
            raise UserError(str(exc)) from exc
        if where is None:
            raise UserError(f"{location}: not a cloud location")
        cloud = CLOUD_OF_STORAGE[where.kind]
        owner = pool if pool is not None and pool in self._pools else None
        if owner is not None and self._pools[owner].cloud != cloud:
            owner = None
        if owner is None:
            same = sorted(name for name, p in self._pools.items() if p.cloud == cloud)
            owner = same[0] if same else None
        key = (cloud, owner or "")
        if key not in self._made:
            config = dict(self._pools[owner].config) if owner else {}
            try:
                self._made[key] = make_storage(cloud, config)
            except (TypeError, ValueError) as exc:
                raise UserError(f"pool {owner}: unusable storage settings: {exc}") from exc
        return self._made[key]


async def cloud_sizes(
    files: Sequence[tuple[str, str | None]], storages: Storages
) -> list[CloudSize]:
    """The size of each (location, pool) in ``files``, asked of the stores concurrently."""

    async def one(location: str, pool: str | None) -> CloudSize:
        try:
            async with asyncio.timeout(STAT_TIMEOUT_S):
                stat = await storages.for_location(location, pool).stat(location)
        except NotFoundError:
            return CloudSize(None)
        except LabBatchError as exc:
            return CloudSize(None, str(exc))
        except TimeoutError:
            return CloudSize(None, f"{location}: no answer from the store in {STAT_TIMEOUT_S:g} s")
        return CloudSize(stat.size_bytes)

    return list(await asyncio.gather(*(one(loc, pool) for loc, pool in files)))


async def download(location: str, target: Path, storage: StorageSigner) -> None:
    """Copy one cloud object to ``target`` (through a temporary file), checked by MD5."""
    stat = await storage.stat(location)
    part = target.with_name(target.name + ".part")
    try:
        await storage.download_to(location, str(part))
        await asyncio.to_thread(_check, part, stat, location)
        os.replace(part, target)
    except OSError as exc:
        raise UserError(f"cannot copy {location} to {target}: {exc.strerror or exc}") from exc
    finally:
        part.unlink(missing_ok=True)


def _check(part: Path, stat: ObjectStat, location: str) -> None:
    size = part.stat().st_size
    if size != stat.size_bytes:
        raise UserError(f"copy of {location} is {size} bytes, the store has {stat.size_bytes}")
    if stat.md5 is None:
        return
    digest = hashlib.md5()
    with part.open("rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    got = base64.b64encode(digest.digest()).decode()
    if got != stat.md5:
        raise UserError(
            f"copy of {location} failed the integrity check: MD5 {got}, expected {stat.md5}"
        )
