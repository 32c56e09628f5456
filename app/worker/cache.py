"""A content-addressed cache of the inputs a worker downloaded, shared by its attempts.

Entries are keyed by ``cache_key`` (a location and its generation or ETag: new content gets a new
key, so an entry is never stale). The cache is bounded by bytes and evicts the least recently
used entries. A hit is hard-linked into the attempt's directory (copied when the attempt dir is
on another file system); entries are read-only so a job cannot change what the next job reads,
and eviction only unlinks the cache's name, never an attempt's link.

Concurrent attempts asking for one key download it once: the first fills it, the others wait
for it (and fill it themselves if that download failed: each attempt has its own signed URL).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
# the share of the disk the cache may fill when no size is configured
DEFAULT_DISK_SHARE = 0.25
_KEY_SUFFIX = ".key"


def entry_name(cache_key: str) -> str:
    """The file name of an entry: a digest of its key."""
    return hashlib.sha256(cache_key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Fetched:
    """How one input reached the attempt: from the cache (``hit``) or downloaded."""

    hit: bool
    size_bytes: int


class FileCache:
    """Inputs downloaded by this worker, at most ``max_bytes`` of them."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, int] = OrderedDict()  # key -> size, oldest first
        # key -> (size, mtime) of the file as cached: a job running as root can write through
        # its hard link despite the read-only mode, and a changed entry is never served again
        self._stamps: dict[str, tuple[int, int]] = {}
        self._filling: dict[str, asyncio.Future[None]] = {}
        self.total_bytes = 0
        root.mkdir(parents=True, exist_ok=True)
        self._load()

    @classmethod
    def on_disk(cls, root: Path, *, share: float = DEFAULT_DISK_SHARE) -> FileCache:
        """A cache allowed ``share`` of the size of the disk that holds ``root``."""
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, int(shutil.disk_usage(root).total * share))

    def _load(self) -> None:
        """Index what an earlier run of the worker left, least recently used first."""
        for stale in self.root.glob("*.part"):
            stale.unlink(missing_ok=True)
        found = []
        for key_file in self.root.glob(f"*{_KEY_SUFFIX}"):
            data = key_file.with_suffix("")
            try:
                st = data.stat()
                found.append((st.st_atime_ns, key_file.read_text(), st.st_size, st.st_mtime_ns))
            except OSError:
                key_file.unlink(missing_ok=True)
        for _, key, size, mtime_ns in sorted(found):  # least recently used first
            self._entries[key] = size
            self._stamps[key] = (size, mtime_ns)
            self.total_bytes += size
        self._evict()

    def holds(self) -> dict[str, int]:
        """Every cached key and its size."""
        return dict(self._entries)

    def _path(self, key: str) -> Path:
        return self.root / entry_name(key)

    async def fetch(
        self, key: str, dest: Path, fill: Callable[[Path], Awaitable[int]], *, size_bytes: int
    ) -> Fetched:
        """Put the content of ``key`` at ``dest``: linked from the cache, or by ``fill(path)``
        (a download that returns the bytes written) into the cache first."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if size_bytes > self.max_bytes:
            return Fetched(False, await fill(dest))
        while True:
            if key in self._entries and self._link(key, dest):
                return Fetched(True, self._entries[key])
            waiting = self._filling.get(key)
            if waiting is None:
                break
            try:
                await asyncio.shield(waiting)
            except Exception:
                log.info("another attempt failed to fetch a cached input; trying ourselves")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._filling[key] = done
        try:
            size = await self._fill(key, fill)
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved: nobody may be waiting
            raise
        finally:
            del self._filling[key]
        if not self._link(key, dest):
            raise OSError(errno.ENOENT, f"cache entry vanished while linking {dest.name}")
        return Fetched(False, size)

    async def _fill(self, key: str, fill: Callable[[Path], Awaitable[int]]) -> int:
        path = self._path(key)
        part = path.with_name(path.name + ".part")
        try:
            size = await fill(part)
            part.chmod(0o444)
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
        path.with_name(path.name + _KEY_SUFFIX).write_text(key)
        st = path.stat()
        self._stamps[key] = (st.st_size, st.st_mtime_ns)
        self._entries[key] = size
        self.total_bytes += size
        self._evict(keep=key)
        return size

    def _link(self, key: str, dest: Path) -> bool:
        """Link (or copy) the entry to ``dest``; False if its file is gone or was changed."""
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            self._forget(key)
            return False
        if (st.st_size, st.st_mtime_ns) != self._stamps.get(key):
            log.warning("a cached input was changed after it was cached; downloading it again")
            self._forget(key)
            return False
        dest.unlink(missing_ok=True)
        try:
            os.link(path, dest)
        except FileNotFoundError:
            self._forget(key)
            return False
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(path, dest)
        self._entries.move_to_end(key)
        # recency survives a restart of the worker in the access time; the mtime stays the stamp
        os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))
        return True

    def _forget(self, key: str) -> None:
        self._stamps.pop(key, None)
        size = self._entries.pop(key, 0)
        self.total_bytes -= size
        path = self._path(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + _KEY_SUFFIX).unlink(missing_ok=True)

    def _evict(self, keep: str | None = None) -> None:
        for key in list(self._entries):
            if self.total_bytes <= self.max_bytes:
                return
            if key != keep:
                log.info("cache full: evicting an entry of %d bytes", self._entries[key])
                self._forget(key)
