"""Move one file between the worker's disk and a signed URL (GCS V4 or Azure SAS), aiohttp only.

- Every request is retried with jittered exponential backoff on transient failures (408, 429,
  5xx, a dropped or reset connection, a timeout); anything else fails at once
  (app.worker.transfer_calls).
- Large downloads are split into ranged GETs run in parallel; a range that breaks off goes on
  from the byte it reached. Large Azure uploads go up as blocks (Put Block / Put Block List),
  each retried on its own. Large GCS uploads go through a resumable session started by a signed
  POST (app.worker.resumable: chunks, and after a failure on from what the session committed);
  small ones, and those to a store that cannot start a session, are one streamed PUT.
- Integrity: the bytes' MD5 (or CRC32C where GCS has no MD5) must match what the driver's stat
  said or what the response headers say (X-Goog-Hash, Content-MD5, x-ms-blob-content-md5).
- A signed URL is a bearer secret: it is sent byte for byte (``yarl.URL(url, encoded=True)``)
  and never logged or put in an error; messages name ``public_location(url)`` instead.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import yarl

from app.worker import resumable
from app.worker.checksums import Hasher, file_hashes
from app.worker.transfer_calls import (
    DEFAULT_TUNING,
    READ_BYTES,
    Retry,
    TransferError,
    TransferJob,
    Tuning,
    file_slice,
    header_hashes,
    public_location,
    signed_url,
)

__all__ = [
    "DEFAULT_TUNING",
    "Stats",
    "Transfer",
    "TransferError",
    "Tuning",
    "download",
    "public_location",
    "upload",
]

log = logging.getLogger(__name__)


class Transfer(Protocol):
    """What this module reads of ``app.protocol.FileTransfer``."""

    @property
    def url(self) -> str: ...
    @property
    def size_bytes(self) -> int | None: ...
    @property
    def md5(self) -> str | None: ...
    @property
    def crc32c(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def resumable_url(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Stats:
    """What one transfer moved: bytes, wall seconds and how many requests were retried."""

    size_bytes: int
    duration_s: float
    retries: int = 0


# -- download --------------------------------------------------------------------------------


async def download(
    session: aiohttp.ClientSession, t: Transfer, dest: Path, *, tuning: Tuning = DEFAULT_TUNING
) -> Stats:
    """Fetch ``t.url`` into ``dest`` (written under a temporary name, then renamed)."""
    job = TransferJob(t.url, t.kind, tuning)
    start = time.monotonic()
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if t.size_bytes is not None and t.size_bytes > tuning.chunk_bytes:
            size, headers = await _ranged(session, job, part, t.size_bytes)
        else:
            size, headers = await _whole(session, job, part)
        await _verify(job, part, t, headers, size)
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return Stats(size, time.monotonic() - start, job.retries)


async def _whole(
    session: aiohttp.ClientSession, job: TransferJob, part: Path
) -> tuple[int, dict[str, str]]:
    """One GET of the whole object; after a break, a ranged GET from the byte reached."""
    at = 0
    headers: dict[str, str] = {}

    async def get() -> None:
        nonlocal at
        rng = {"Range": f"bytes={at}-"} if at else {}
        async with session.get(signed_url(job.url), headers=rng) as resp:
            await job.check(resp, "download of")
            if at and resp.status != 206:
                at = 0  # the range was ignored: the whole object comes again
            elif at:
                _check_range_start(job, resp, at)
            if not at:
                headers.clear()
                headers.update(resp.headers)
            with part.open("r+b" if at else "wb") as f:
                f.seek(at)
                f.truncate()
                async for chunk in resp.content.iter_chunked(READ_BYTES):
                    f.write(chunk)
                    at += len(chunk)

    await job.call("download of", get)
    return at, headers


async def _ranged(
    session: aiohttp.ClientSession, job: TransferJob, part: Path, size: int
) -> tuple[int, dict[str, str]]:
    with part.open("wb") as f:
        f.truncate(size)
    limit = asyncio.Semaphore(job.tuning.parallel)
    headers: dict[str, str] = {}

    async def one(offset: int) -> None:
        end = min(offset + job.tuning.chunk_bytes, size) - 1
        at = offset  # the first byte of the range not on disk yet: a retry goes on from here

        async def get() -> None:
            nonlocal at
            rng = {"Range": f"bytes={at}-{end}"}
            async with session.get(signed_url(job.url), headers=rng) as resp:
                await job.check(resp, "download of")
                if resp.status != 206:
                    raise TransferError(
                        f"download of {job.where} failed: the server ignored a byte range",
                        location=job.where,
                    )
                _check_range_start(job, resp, at)
                headers.update(resp.headers)
                with part.open("r+b") as f:
                    f.seek(at)
                    async for chunk in resp.content.iter_chunked(READ_BYTES):
                        chunk = chunk[: end + 1 - at]
                        f.write(chunk)
                        at += len(chunk)
                if at != end + 1:
                    raise Retry(f"short range: {at - offset} of {end + 1 - offset} bytes")

        async with limit:
            await job.call("download of", get)

    await asyncio.gather(*(one(o) for o in range(0, size, job.tuning.chunk_bytes)))
    return size, headers


def _check_range_start(job: TransferJob, resp: aiohttp.ClientResponse, at: int) -> None:
    """A 206 must start where we asked: anything else would put bytes in the wrong place."""
    content_range = resp.headers.get("Content-Range", "")
    first = content_range.removeprefix("bytes ").partition("-")[0]
    if first.isdigit() and int(first) != at:
        raise TransferError(
            f"download of {job.where} failed: asked for bytes from {at}, got {content_range}",
            location=job.where,
        )


async def _verify(
    job: TransferJob, part: Path, t: Transfer, headers: dict[str, str], size: int
) -> None:
    if t.size_bytes is not None and size != t.size_bytes:
        raise TransferError(
            f"download of {job.where} failed: got {size} bytes, expected {t.size_bytes}",
            location=job.where,
        )
    md5, crc = header_hashes(headers)
    want_md5, want_crc = t.md5 or md5, t.crc32c or crc
    if not want_md5 and not want_crc:
        return
    got = await asyncio.to_thread(
        file_hashes, part, md5=bool(want_md5), crc32c=bool(want_crc and not want_md5)
    )
    if want_md5 and got.md5 != want_md5:
        raise TransferError(
            f"download of {job.where} failed the integrity check: MD5 {got.md5}, "
            f"expected {want_md5}",
            location=job.where,
        )
    if want_crc and not want_md5 and got.crc32c != want_crc:
        raise TransferError(
            f"download of {job.where} failed the integrity check: CRC32C {got.crc32c}, "
            f"expected {want_crc}",
            location=job.where,
        )


# -- upload ----------------------------------------------------------------------------------


async def upload(
    session: aiohttp.ClientSession, src: Path, t: Transfer, *, tuning: Tuning = DEFAULT_TUNING
) -> Stats:
    """Store ``src`` at ``t.url``: the object appears whole or not at all."""
    job = TransferJob(t.url, t.kind, tuning)
    start = time.monotonic()
    try:
        size, md5 = await asyncio.to_thread(_size_and_md5, src)
    except OSError as exc:
        raise TransferError(
            f"upload to {job.where} failed: cannot read {src.name}: {exc.strerror}",
            location=job.where,
        ) from None
    if t.kind == "azure" and size > tuning.block_bytes:
        await _put_blocks(session, job, src, size, md5)
    elif t.kind == "gcs" and t.resumable_url and size > tuning.upload_chunk_bytes:
        if not await _resumable(session, job, src, size, md5, t.resumable_url):
            await _put_whole(session, job, src, size, md5)
    else:
        await _put_whole(session, job, src, size, md5)
    return Stats(size, time.monotonic() - start, job.retries)


async def _put_whole(
    session: aiohttp.ClientSession, job: TransferJob, src: Path, size: int, md5: str
) -> None:
    """One streamed PUT of the whole file, retried whole."""
    headers = {"Content-Length": str(size)}
    if job.kind == "azure":
        headers |= {"x-ms-blob-type": "BlockBlob", "Content-MD5": md5}
    answer = await job.call("upload to", lambda: _put(session, job, src, headers))
    stored_md5, _ = header_hashes(answer)
    if job.kind == "gcs" and stored_md5 and stored_md5 != md5:
        raise TransferError(
            f"upload to {job.where} failed the integrity check: the store has MD5 "
            f"{stored_md5}, the file {md5}",
            location=job.where,
        )


async def _resumable(
    session: aiohttp.ClientSession, job: TransferJob, src: Path, size: int, md5: str, start_url: str
) -> bool:
    """Upload through a resumable session; False when the store cannot start one."""
    try:
        await resumable.upload_resumable(
            session,
            job,
            src,
            size,
            md5,
            start_url=start_url,
            chunk_bytes=job.tuning.upload_chunk_bytes,
        )
    except resumable.ResumableUnsupported as exc:
        log.info("upload to %s: no resumable session (%s); sending one PUT", job.where, exc)
        return False
    return True


async def _put(
    session: aiohttp.ClientSession,
    job: TransferJob,
    src: Path,
    headers: dict[str, str],
    *,
    url: yarl.URL | None = None,
    offset: int = 0,
    length: int | None = None,
) -> dict[str, str]:
    body = file_slice(src, offset, length)
    async with session.put(url or signed_url(job.url), data=body, headers=headers) as resp:
        await job.check(resp, "upload to")
        return dict(resp.headers)


async def _put_blocks(
    session: aiohttp.ClientSession, job: TransferJob, src: Path, size: int, md5: str
) -> None:
    step = job.tuning.block_bytes
    offsets = list(range(0, size, step))
    ids = [base64.b64encode(f"{i:08d}".encode()).decode() for i in range(len(offsets))]
    limit = asyncio.Semaphore(job.tuning.parallel)

    async def one(block_id: str, offset: int) -> None:
        length = min(step, size - offset)
        block_md5 = await asyncio.to_thread(_slice_md5, src, offset, length)
        headers = {"Content-Length": str(length), "Content-MD5": block_md5}
        url = signed_url(job.url, comp="block", blockid=block_id)
        async with limit:
            await job.call(
                "upload to",
                lambda: _put(session, job, src, headers, url=url, offset=offset, length=length),
            )

    await asyncio.gather(*(one(b, o) for b, o in zip(ids, offsets, strict=True)))
    body = "<?xml version='1.0' encoding='utf-8'?><BlockList>"
    body += "".join(f"<Latest>{b}</Latest>" for b in ids) + "</BlockList>"

    async def commit() -> dict[str, str]:
        headers = {"x-ms-blob-content-md5": md5, "Content-Type": "application/xml"}
        url = signed_url(job.url, comp="blocklist")
        async with session.put(url, data=body.encode(), headers=headers) as resp:
            await job.check(resp, "upload to")
            return dict(resp.headers)

    await job.call("upload to", commit)


def _size_and_md5(src: Path) -> tuple[int, str]:
    size = src.stat().st_size
    md5 = file_hashes(src).md5
    assert md5 is not None
    return size, md5


def _slice_md5(src: Path, offset: int, length: int) -> str:
    hasher = Hasher()
    with src.open("rb") as f:
        f.seek(offset)
        left = length
        while left > 0 and (chunk := f.read(min(READ_BYTES, left))):
            hasher.update(chunk)
            left -= len(chunk)
    assert hasher.md5 is not None
    return hasher.md5
