"""The worker's HTTP session and input cache for signed-URL files, both made at first use.

Apart from remote.py (which moves the bytes) so that the agent can hold one without loading
aiohttp: that import was two thirds of the agent's start-up, and most workers (local pools,
jobs without cloud files) never make a transfer. Only ``session()`` imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from app.worker.cache import FileCache

if TYPE_CHECKING:
    import aiohttp


class RemoteFiles:
    """The worker's HTTP session and input cache, made at the first remote transfer."""

    def __init__(self, cache_dir: Path, cache_share: float) -> None:
        self._cache_dir = cache_dir
        self._cache_share = cache_share
        self._session: aiohttp.ClientSession | None = None
        self._cache: FileCache | None = None

    def session(self) -> aiohttp.ClientSession:
        """The shared session (timeouts per read, not per transfer: files may be large)."""
        import aiohttp  # the first job with cloud files pays for it, not the agent's start-up

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
