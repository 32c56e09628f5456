"""Turn an attempt's cloud locations into signed URLs just before the driver sends it.

The stored spec names inputs and outputs by location (``gs://…``, Azure Blob URLs); a worker
on a cloud VM holds no credential, so each attempt gets URLs that read or write exactly its
own files, for a limited time. Inputs are stat'ed too: their size, checksums and version go
with the URL, for the worker's integrity check and cache key.

When a URL cannot be made (no credential, permission refused), the transfer's URL becomes
``error:<message>``: the worker ends the attempt as Error with that message, like any other
input it cannot read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from app.clouds.base import ObjectStat, StorageSigner
from app.clouds.storage import STORAGE_OF_CLOUD, make_storage
from app.errors import LabBatchError, NotFoundError
from app.models.locations import LocationError, parse_cloud
from app.protocol import FileTransfer, JobRun

log = logging.getLogger(__name__)
ERROR_SCHEME = "error:"
# an input URL must outlive the attempt's wait for cores and its download retries
GET_TTL_S = 6 * 3600.0
# an output URL must outlive the command: its timeout (or a day) plus the same margin
PUT_TTL_S = 24 * 3600.0
MAX_TTL_S = 7 * 24 * 3600.0
STAT_FRESH_S = 30.0  # many attempts reading one input in a burst share one stat

_NO_SCRATCH = (
    "a cloud VM cannot reach files on the driver's machine: give the pool a scratch location "
    "in its cloud (labbatch pool set POOL --scratch gs://… or az://…) and put batch inputs "
    "and outputs in a bucket or container"
)

_NO_STORAGE = (
    "a local pool's workers cannot reach cloud storage; run the job on a GCE or Azure pool"
)

StorageOf = Callable[[str], StorageSigner | None]


class Signer:
    """Signs the cloud transfers of attempts, for the pools that have storage."""

    def __init__(self, storage_of: StorageOf) -> None:
        self._storage_of = storage_of
        self._stats: dict[str, tuple[float, ObjectStat]] = {}

    async def sign_runs(self, pool: str, runs: list[JobRun]) -> list[JobRun]:
        """``runs`` with every cloud location replaced by a signed URL (others unchanged)."""
        if not any(run.inputs or run.outputs for run in runs):
            return runs
        storage = self._storage_of(pool)
        if storage is None and not any(
            _cloud(t) for run in runs for t in (*run.inputs, *run.outputs)
        ):
            return runs
        return list(await asyncio.gather(*(self._sign_run(storage, run) for run in runs)))

    async def _sign_run(self, storage: StorageSigner | None, run: JobRun) -> JobRun:
        if not run.inputs and not run.outputs:
            return run
        put_ttl = min((run.timeout_s or PUT_TTL_S) + GET_TTL_S, MAX_TTL_S)
        inputs = await asyncio.gather(*(self._input(storage, t) for t in run.inputs))
        outputs = await asyncio.gather(*(self._output(storage, t, put_ttl) for t in run.outputs))
        return replace(run, inputs=tuple(inputs), outputs=tuple(outputs))

    async def _input(self, storage: StorageSigner | None, t: FileTransfer) -> FileTransfer:
        if storage is not None and t.url.startswith("file:"):
            return _failed(t, _NO_SCRATCH)
        if not _cloud(t):
            return t
        if storage is None:
            return _failed(t, f"{t.url}: {_NO_STORAGE}")
        try:
            stat = await self._stat(storage, t.url)
            signed = await storage.sign_get(t.url, GET_TTL_S)
        except LabBatchError as exc:
            return _failed(t, str(exc))
        if stat is None:  # missing now: the worker's download says so with the location
            return replace(t, url=signed.url, kind=signed.kind)
        return replace(
            t,
            url=signed.url,
            kind=signed.kind,
            size_bytes=stat.size_bytes,
            md5=stat.md5,
            crc32c=stat.crc32c,
            cache_key=stat.cache_key,
        )

    async def _output(
        self, storage: StorageSigner | None, t: FileTransfer, ttl_s: float
    ) -> FileTransfer:
        if storage is not None and t.url.startswith("file:"):
            return _failed(t, _NO_SCRATCH)
        if not _cloud(t):
            return t
        if storage is None:
            return _failed(t, f"{t.url}: {_NO_STORAGE}")
        try:
            signed = await storage.sign_put(t.url, ttl_s)
        except LabBatchError as exc:
            return _failed(t, str(exc))
        return replace(t, url=signed.url, kind=signed.kind, resumable_url=signed.resumable_url)

    async def _stat(self, storage: StorageSigner, location: str) -> ObjectStat | None:
        now = time.monotonic()
        cached = self._stats.get(location)
        if cached is not None and now - cached[0] < STAT_FRESH_S:
            return cached[1]
        try:
            stat = await storage.stat(location)
        except NotFoundError:
            return None
        if len(self._stats) > 10_000:
            self._stats.clear()
        self._stats[location] = (now, stat)
        return stat


def _cloud(t: FileTransfer) -> bool:
    try:
        return parse_cloud(t.url) is not None
    except LocationError:
        return True  # refused by the storage with its message


def _failed(t: FileTransfer, message: str) -> FileTransfer:
    log.warning("cannot sign %s: %s", t.url, message)
    return replace(t, url=ERROR_SCHEME + message)


class PoolStorages:
    """The StorageSigner of each cloud pool, made once per pool and settings."""

    def __init__(self, pool_config: Callable[[str], Any]) -> None:
        self._pool_config = pool_config  # pool name -> PoolConfig (cloud, config) or None
        self._made: dict[str, tuple[str, StorageSigner | None]] = {}

    def __call__(self, pool: str) -> StorageSigner | None:
        """The pool's storage; None for local pools (and pools whose settings are unusable)."""
        config = self._pool_config(pool)
        if config is None or config.cloud not in STORAGE_OF_CLOUD:
            return None
        fingerprint = json.dumps([config.cloud, config.config], sort_keys=True, default=str)
        made = self._made.get(pool)
        if made is None or made[0] != fingerprint:
            try:
                storage: StorageSigner | None = make_storage(config.cloud, config.config)
            except (TypeError, ValueError) as exc:
                log.warning("pool %s: unusable storage settings: %s", pool, exc)
                storage = None
            made = self._made[pool] = (fingerprint, storage)
        return made[1]
