"""Stage an attempt's remote files: inputs through the cache, outputs up, in parallel.

What the worker's staging calls for ``https://`` transfers (signed URLs): it returns the counts
the attempt reports (bytes, seconds, cache hits and bytes the cache saved).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import aiohttp

from app.worker.cache import FileCache
from app.worker.transfer import DEFAULT_TUNING, Transfer, Tuning, download, upload

T = TypeVar("T")
PARALLEL_FILES = 4


class CachedTransfer(Transfer, Protocol):
    """A transfer that may name its content's cache key."""

    @property
    def cache_key(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class RemoteStats:
    """Counts of one attempt's remote transfers."""

    in_bytes: int = 0
    in_s: float = 0.0
    out_bytes: int = 0
    out_s: float = 0.0
    cache_hits: int = 0
    cache_bytes_saved: int = 0
    retries: int = 0


class RemoteFiles:
    """The worker's HTTP session and input cache, made at the first remote transfer."""

    def __init__(self, cache_dir: Path, cache_share: float) -> None:
        self._cache_dir = cache_dir
        self._cache_share = cache_share
        self._session: aiohttp.ClientSession | None = None
        self._cache: FileCache | None = None

    def session(self) -> aiohttp.ClientSession:
        """The shared session (timeouts per read, not per transfer: files may be large)."""
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self._session

    @property
    def cache(self) -> FileCache | None:
        """The input cache, or None when the worker runs without one."""
        if self._cache is None and self._cache_share > 0:
            self._cache = FileCache.on_disk(self._cache_dir, share=self._cache_share)
        return self._cache

    def cached_keys(self) -> dict[str, int]:
        """The cache keys this worker holds and their sizes (empty before any download)."""
        return self._cache.holds() if self._cache is not None else {}

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _limited(coros: Sequence[Awaitable[T]], parallel: int) -> list[T]:
    limit = asyncio.Semaphore(parallel)

    async def one(coro: Awaitable[T]) -> T:
        async with limit:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def fetch_inputs(
    session: aiohttp.ClientSession,
    items: Sequence[tuple[CachedTransfer, Path]],
    cache: FileCache | None,
    *,
    parallel: int = PARALLEL_FILES,
    tuning: Tuning = DEFAULT_TUNING,
) -> RemoteStats:
    """Put every input at its path: from the cache where it holds the content, else download."""
    start = time.monotonic()
    retries = 0

    async def one(t: CachedTransfer, dest: Path) -> tuple[bool, int]:
        nonlocal retries

        async def fill(path: Path) -> int:
            nonlocal retries
            stats = await download(session, t, path, tuning=tuning)
            retries += stats.retries
            return stats.size_bytes

        if cache is None or not t.cache_key:
            return False, await fill(dest)
        fetched = await cache.fetch(t.cache_key, dest, fill, size_bytes=t.size_bytes or 0)
        return fetched.hit, fetched.size_bytes

    results = await _limited([one(t, dest) for t, dest in items], parallel)
    return RemoteStats(
        in_bytes=sum(size for hit, size in results if not hit),
        in_s=time.monotonic() - start,
        cache_hits=sum(1 for hit, _ in results if hit),
        cache_bytes_saved=sum(size for hit, size in results if hit),
        retries=retries,
    )


async def save_outputs(
    session: aiohttp.ClientSession,
    items: Sequence[tuple[Path, Transfer]],
    *,
    parallel: int = PARALLEL_FILES,
    tuning: Tuning = DEFAULT_TUNING,
) -> RemoteStats:
    """Upload every output to its signed URL."""
    start = time.monotonic()
    results = await _limited([upload(session, src, t, tuning=tuning) for src, t in items], parallel)
    return RemoteStats(
        out_bytes=sum(s.size_bytes for s in results),
        out_s=time.monotonic() - start,
        retries=sum(s.retries for s in results),
    )
