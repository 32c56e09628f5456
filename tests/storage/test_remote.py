"""An attempt's remote files end to end on the worker side: signed URLs, transfers, the cache."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from app.worker.cache import FileCache
from app.worker.remote import RemoteStats, fetch_inputs, save_outputs
from app.worker.transfer import Tuning
from tests.storage.emulators import Gcs
from tests.storage.helpers import gcs_storage, new_bucket

FAST = Tuning(chunk_bytes=1 << 20, backoff_s=0.01)


@dataclass(frozen=True, slots=True)
class Ft:
    """The fields of app.protocol.FileTransfer the worker reads."""

    url: str
    kind: str
    size_bytes: int | None = None
    md5: str | None = None
    crc32c: str | None = None
    cache_key: str | None = None
    resumable_url: str | None = None


async def test_second_attempt_reading_an_input_hits_the_cache(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    data = os.urandom(3 * (1 << 20))
    storage.client().bucket(bucket).blob("ref/genome.fa").upload_from_string(data)
    ref = f"gs://{bucket}/ref/genome.fa"
    cache = FileCache(tmp_path / "cache", max_bytes=100 << 20)

    async def attempt(n: int) -> tuple[Path, RemoteStats]:
        stat = await storage.stat(ref)
        get = await storage.sign_get(ref, 600)
        t = Ft(get.url, "gcs", stat.size_bytes, stat.md5, stat.crc32c, stat.cache_key)
        dest = tmp_path / f"attempt{n}" / "in" / "ref.fa"
        async with aiohttp.ClientSession() as session:
            return dest, await fetch_inputs(session, [(t, dest)], cache, tuning=FAST)

    _, first = await attempt(1)
    second_dest, second = await attempt(2)
    assert (first.in_bytes, first.cache_hits) == (len(data), 0)
    assert (second.in_bytes, second.cache_hits) == (0, 1)
    assert second.cache_bytes_saved == len(data)
    assert hashlib.sha256(second_dest.read_bytes()).digest() == hashlib.sha256(data).digest()

    out = tmp_path / "attempt2" / "out" / "idx.fai"
    out.parent.mkdir()
    out.write_bytes(b"chr1\t100\n")
    put = await storage.sign_put(f"gs://{bucket}/scratch/1/2/idx.fai", 600)
    async with aiohttp.ClientSession() as session:
        saved = await save_outputs(session, [(out, Ft(put.url, "gcs"))], tuning=FAST)
    assert saved.out_bytes == 9
    blob = storage.client().bucket(bucket).blob("scratch/1/2/idx.fai")
    assert blob.download_as_bytes() == b"chr1\t100\n"
