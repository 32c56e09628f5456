"""A batch's kept files: listing them, copying one out, and removing them when their time is up.

Cloud files (a cloud pool's scratch, bucket destinations) are sized and copied through the
pool's storage SDK with the user's credentials (cloud_files).

Scratch files stay until the batch is deleted, or until the pool's retention has passed since
the batch ended; a batch that runs again (`labbatch retry`) is not complete, so its files stay
while the retry may need them. Only local scratch directories are swept here (cloud ones:
cloud_scratch).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.engine.batches import cloud_files
from app.engine.batches.files import scratch_location, scratch_root
from app.engine.batches.frontend import find_job, get_batch
from app.errors import NotFoundError, UserError
from app.models.db import Database, data_dir
from app.models.files import is_local
from app.models.tables import Attempt, Batch, Job, Pool

log = logging.getLogger("labbatch.files")


@dataclass(frozen=True, slots=True)
class _PoolFiles:
    scratch: str | None
    retention_s: float
    cloud: str = "local"
    config: dict[str, Any] = field(default_factory=dict)  # storage settings among others


def read_pools(conn: Connection) -> dict[str, _PoolFiles]:
    """Each pool's scratch setting and retention (and its cloud and settings, for storage)."""
    query = select(Pool.name, Pool.scratch, Pool.retention_s, Pool.cloud, Pool.config)
    return {
        row.name: _PoolFiles(row.scratch, row.retention_s, row.cloud, dict(row.config or {}))
        for row in conn.execute(query)
    }


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One output file of a job: in the batch's scratch, or copied to a destination."""

    job_id: int
    job: str
    name: str  # the output's name (`vcf.tbi` for a group member)
    where: str  # a path or URL
    size_bytes: int | None  # None: not there (not written yet, or removed), or unknown
    kept: bool  # True: in scratch; False: a batch output's destination
    # why the size of a cloud file is unknown (no credentials, no answer): None when known
    size_error: str | None = None
    pool: str | None = field(default=None, compare=False, repr=False)  # whose storage reads it


async def batch_files(
    db: Database, batch_id: int, *, job: str | None = None, home: Path | None = None
) -> list[StoredFile]:
    """The output files of a batch's jobs (or of one job), in job order."""
    await get_batch(db, batch_id)
    job_id = None if job is None else (await find_job(db, batch_id, job)).job_id

    def read(conn: Connection) -> tuple[Any, list[Any]]:
        query = select(Job.job_id, Job.name, Job.spec, Job.pool).where(Job.batch_id == batch_id)
        if job_id is not None:
            query = query.where(Job.job_id == job_id)
        return read_pools(conn), list(conn.execute(query.order_by(Job.job_id)))

    pools, rows = await db.read(read)
    root = home or data_dir()
    files = []
    for row in rows:
        for entry in (row.spec.get("files") or {}).get("out", ()):
            if "url" in entry:
                where, kept, pool = entry["url"], False, row.pool
            else:
                pool = entry["pool"]
                owner = pools.get(pool)
                scratch = scratch_root(owner.scratch if owner else None, root)
                where, kept = scratch_location(scratch, batch_id, row.job_id, entry["key"]), True
            size = _size(where) if is_local(where) else None
            files.append(
                StoredFile(row.job_id, row.name, entry["name"], where, size, kept, None, pool)
            )
    return await _with_cloud_sizes(files, pools)


async def _with_cloud_sizes(
    files: list[StoredFile], pools: dict[str, _PoolFiles]
) -> list[StoredFile]:
    cloud = [i for i, f in enumerate(files) if not is_local(f.where)]
    if not cloud:
        return files
    sizes = await cloud_files.cloud_sizes(
        [(files[i].where, files[i].pool) for i in cloud], cloud_files.Storages(pools)
    )
    for i, size in zip(cloud, sizes, strict=True):
        files[i] = replace(files[i], size_bytes=size.size_bytes, size_error=size.problem)
    return files


def _size(where: str) -> int | None:
    try:
        return os.stat(where).st_size
    except OSError:
        return None


async def get_file(
    db: Database, batch_id: int, ref: str, dest: str | None, *, home: Path | None = None
) -> list[Path]:
    """Copy a job output (`JOB.OUTPUT`; a group: each member) out of scratch; the copies."""
    job, _, output = ref.rpartition(".")
    if not job:
        raise UserError(f"{ref!r}: name a job's output as JOB.OUTPUT")
    files = [f for f in await batch_files(db, batch_id, job=job, home=home) if f.kept]
    chosen = [f for f in files if f.name == output or f.name.startswith(output + ".")]
    if not chosen:
        known = ", ".join(sorted({f.name.split(".")[0] for f in files})) or "none"
        raise NotFoundError(f"job {job!r} of batch {batch_id} has no output {output!r} ({known})")
    unknown = [f for f in chosen if f.size_error]
    if unknown:
        raise UserError(unknown[0].size_error or "")
    missing = [f for f in chosen if f.size_bytes is None]
    if missing:
        raise NotFoundError(
            f"{missing[0].where} is not there: the job has not succeeded yet, or its files "
            "were removed (batch deleted or retention passed)"
        )
    targets = [_target(f, dest, len(chosen)) for f in chosen]
    local = [(f, t) for f, t in zip(chosen, targets, strict=True) if is_local(f.where)]
    await asyncio.to_thread(_copy_out, local)
    remote = [(f, t) for f, t in zip(chosen, targets, strict=True) if not is_local(f.where)]
    if remote:
        storages = cloud_files.Storages(await db.read(read_pools))
        for f, target in remote:
            storage = storages.for_location(f.where, f.pool)
            await cloud_files.download(f.where, target, storage)
    return targets


def _target(f: StoredFile, dest: str | None, count: int) -> Path:
    name = os.path.basename(f.where)
    if dest is None:
        target = Path(name)
    elif Path(dest).is_dir() or dest.endswith("/"):
        target = Path(dest) / name
    else:  # a group's members go next to `dest`, named `dest.<member>`
        target = Path(dest if count == 1 else f"{dest}.{f.name.split('.', 1)[1]}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot copy {f.where} to {target}: {exc.strerror or exc}") from exc
    return target


def _copy_out(copies: list[tuple[StoredFile, Path]]) -> None:
    for f, target in copies:
        try:
            shutil.copyfile(f.where, target)
        except OSError as exc:
            raise UserError(f"cannot copy {f.where} to {target}: {exc.strerror or exc}") from exc


# ---------------------------------------------------------------------------------------------
# Lifetime


async def remove_batch_files(db: Database, batch_id: int, *, home: Path | None = None) -> None:
    """Remove a batch's scratch files from every local scratch directory (batch deleted)."""
    roots = _local_roots(await db.read(read_pools), home or data_dir())
    await asyncio.to_thread(_remove, [Path(root) / str(batch_id) for root in roots])


async def remove_expired_files(
    db: Database, *, home: Path | None = None, now: float | None = None
) -> int:
    """Remove the scratch files of deleted batches and of batches whose retention passed."""
    now = time.time() if now is None else now
    pools = await db.read(read_pools)
    retention: dict[str, float] = defaultdict(float)
    for pool in pools.values():
        root = scratch_root(pool.scratch, home or data_dir())
        if is_local(root):  # the longest retention of the pools sharing a directory wins
            retention[root] = max(retention[root], pool.retention_s)
    found = await asyncio.to_thread(_batch_dirs, retention)
    if not found:
        return 0
    ids = sorted({batch_id for batch_ids in found.values() for batch_id in batch_ids})

    def read(conn: Connection) -> dict[int, Any]:
        query = select(Batch.id, Batch.deleted, Batch.complete, Batch.time_completed)
        return {row.id: row for row in conn.execute(query.where(Batch.id.in_(ids)))}

    batches = await db.read(read)
    doomed = [
        Path(root) / str(batch_id)
        for root, batch_ids in found.items()
        for batch_id in batch_ids
        if batch_expired(batches.get(batch_id), retention[root], now)
    ]
    await asyncio.to_thread(_remove, doomed)
    return len(doomed)


def batch_expired(batch: Any, retention_s: float, now: float) -> bool:
    """Whether a batch's scratch files may go: it was deleted (or is unknown), or it is complete
    and ``retention_s`` has passed since it ended. A batch that runs again is not complete."""
    if batch is None or batch.deleted:
        return True
    return bool(batch.complete) and (batch.time_completed or now) + retention_s <= now


def _local_roots(pools: dict[str, Any], home: Path) -> set[str]:
    roots = {scratch_root(pool.scratch, home) for pool in pools.values()}
    return {root for root in roots if is_local(root)}


def _batch_dirs(roots: Iterable[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for root in roots:
        try:
            found[root] = [int(e.name) for e in os.scandir(root) if e.name.isdigit()]
        except FileNotFoundError:
            continue
    return found


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed the files of batch %s in %s", path.name, path.parent)


async def attempt_staging(db: Database, batch_id: int) -> dict[int, dict[str, float]]:
    """Job id -> the transfer figures of its latest attempt that staged files."""

    def read(conn: Connection) -> dict[int, dict[str, float]]:
        query = (
            select(Attempt.job_id, Attempt.staging)
            .where(Attempt.batch_id == batch_id, Attempt.staging.is_not(None))
            .order_by(Attempt.job_id, Attempt.attempt)
        )
        return {job_id: dict(staging) for job_id, staging in conn.execute(query)}

    return await db.read(read)
