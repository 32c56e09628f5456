"""The worker's input cache: hits link, concurrent readers download once, LRU within bytes."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from app.worker.cache import FileCache


class Filler:
    """A stand-in download that counts its calls and can be held or made to fail."""

    def __init__(self, data: bytes = b"ACGT") -> None:
        self.data = data
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False
        self.called = asyncio.Event()

    async def __call__(self, path: Path) -> int:
        self.calls += 1
        self.called.set()
        await self.gate.wait()
        if self.fail:
            self.fail = False
            raise OSError("connection reset")
        await asyncio.to_thread(path.write_bytes, self.data)
        return len(self.data)


async def test_second_read_is_a_hit_linked_read_only(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache", max_bytes=1000)
    fill = Filler()
    first = await cache.fetch("gs://b/ref#1", tmp_path / "a1" / "in" / "ref", fill, size_bytes=4)
    second = await cache.fetch("gs://b/ref#1", tmp_path / "a2" / "in" / "ref", fill, size_bytes=4)
    assert (first.hit, second.hit, fill.calls) == (False, True, 1)
    a1, a2 = (tmp_path / a / "in" / "ref" for a in ("a1", "a2"))
    assert a2.read_bytes() == b"ACGT" and os.stat(a1).st_ino == os.stat(a2).st_ino
    assert not os.stat(a2).st_mode & stat.S_IWUSR
    newer = await cache.fetch("gs://b/ref#2", tmp_path / "a3" / "ref", fill, size_bytes=4)
    assert not newer.hit and fill.calls == 2  # a new generation is new content


async def test_concurrent_attempts_download_once_and_survive_a_failed_fill(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache", max_bytes=1000)
    fill = Filler()
    fill.gate.clear()
    tasks = [
        asyncio.create_task(cache.fetch("k#1", tmp_path / f"a{i}" / "x", fill, size_bytes=4))
        for i in range(5)
    ]
    await fill.called.wait()
    fill.gate.set()
    results = await asyncio.gather(*tasks)
    assert fill.calls == 1 and sorted(r.hit for r in results) == [False] + [True] * 4
    fill.gate.clear()
    fill.fail = True
    fill.called.clear()
    first = asyncio.create_task(cache.fetch("k#2", tmp_path / "b0" / "x", fill, size_bytes=4))
    await fill.called.wait()
    waiter = asyncio.create_task(cache.fetch("k#2", tmp_path / "b1" / "x", fill, size_bytes=4))
    fill.gate.set()
    with pytest.raises(OSError, match="connection reset"):
        await first
    assert not (await waiter).hit and fill.calls == 3  # the waiter downloaded it itself
    assert not list((tmp_path / "cache").glob("*.part"))


async def test_lru_eviction_within_bytes_and_restart(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = FileCache(root, max_bytes=10)
    fill = Filler(b"1234")
    for key in ("a#1", "b#1"):
        await cache.fetch(key, tmp_path / key / "x", fill, size_bytes=4)
    await cache.fetch("a#1", tmp_path / "again" / "x", fill, size_bytes=4)  # a is now recent
    await cache.fetch("c#1", tmp_path / "c" / "x", fill, size_bytes=4)
    assert sorted(cache.holds()) == ["a#1", "c#1"] and cache.total_bytes == 8
    assert (tmp_path / "b#1" / "x").read_bytes() == b"1234"  # an attempt's link outlives eviction
    big = await cache.fetch("huge#1", tmp_path / "h" / "x", Filler(b"x" * 11), size_bytes=11)
    assert not big.hit and "huge#1" not in cache.holds()
    again = FileCache(root, max_bytes=10)
    assert again.holds() == {"a#1": 4, "c#1": 4}
    assert (await again.fetch("c#1", tmp_path / "d" / "x", fill, size_bytes=4)).hit


async def test_an_entry_a_job_wrote_to_is_never_served_again(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache", max_bytes=1000)
    fill = Filler(b"ACGT")
    first = tmp_path / "a1" / "ref"
    await cache.fetch("gs://b/ref#1", first, fill, size_bytes=4)
    first.chmod(0o644)  # a job running as root writes through its hard link
    first.write_bytes(b"XXXX")
    again = await cache.fetch("gs://b/ref#1", tmp_path / "a2" / "ref", fill, size_bytes=4)
    assert not again.hit and fill.calls == 2
    assert (tmp_path / "a2" / "ref").read_bytes() == b"ACGT"
