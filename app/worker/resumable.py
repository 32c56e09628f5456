"""GCS resumable uploads through a signed start URL (XML API), aiohttp only.

1. ``POST`` the V4 signed start URL with ``x-goog-resumable: start``: the answer's ``Location``
   is the session URI (a bearer secret like the signed URL: never logged).
2. ``PUT`` the file in chunks (multiples of 256 KiB) with ``Content-Range: bytes A-B/TOTAL``;
   GCS answers 308 with ``Range: bytes=0-N`` (what it committed) until the last one (200/201).
3. On a transient failure (408, 429, 5xx, a dropped connection) ask the session what it holds
   (``PUT`` with ``Content-Range: bytes */TOTAL``, empty body) and go on from there: the bytes
   already committed are never sent again.
4. The final answer's hashes (``X-Goog-Hash``, or a JSON body's ``md5Hash``/``crc32c``) must
   match the file's.
5. A session that fails for good is cancelled (``DELETE``) so no half-object lingers.

A store that will not start a session (any lasting refusal: 501 from the GCS emulator, 405 or
400 from a front end without the XML API's resumable uploads, 403 from one that does not take
the POST's signature) raises ``ResumableUnsupported``; the caller then sends the file in one
PUT, whose own answer says what is wrong if anything still is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import yarl

from app.worker.checksums import file_hashes
from app.worker.transfer_calls import (
    TRANSIENT_STATUS,
    Retry,
    TransferError,
    TransferJob,
    describe,
    file_slice,
    header_hashes,
)

log = logging.getLogger(__name__)
_TRANSIENT_EXC = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


class ResumableUnsupported(Exception):
    """The store refused to start a resumable session: send the file in one PUT instead."""


@dataclass
class Progress:
    """What one resumable upload sent: every byte put on the wire, and how often it resumed."""

    bytes_sent: int = 0
    resumes: int = 0


async def upload_resumable(
    session: aiohttp.ClientSession,
    job: TransferJob,
    src: Path,
    size: int,
    md5: str,
    *,
    start_url: str,
    chunk_bytes: int,
) -> Progress:
    """Upload ``src`` through a session started at ``start_url``; returns what it sent."""
    session_uri = await job.call("upload to", lambda: _start(session, job, start_url))
    progress = Progress()
    try:
        answer = await _send(session, job, src, size, session_uri, chunk_bytes, progress)
        await _check_hashes(job, src, md5, answer)
    except BaseException:
        await _cancel(session, session_uri)
        raise
    if progress.resumes:
        log.info("upload to %s resumed %d times", job.where, progress.resumes)
    return progress


async def _start(session: aiohttp.ClientSession, job: TransferJob, start_url: str) -> yarl.URL:
    headers = {"x-goog-resumable": "start", "Content-Length": "0"}
    url = yarl.URL(start_url, encoded=True)
    async with session.post(url, headers=headers, allow_redirects=False) as resp:
        if resp.status >= 300 and resp.status not in TRANSIENT_STATUS:
            raise ResumableUnsupported(f"HTTP {resp.status}")
        await job.check(resp, "upload to")
        location = resp.headers.get("Location")
        if not location:
            raise ResumableUnsupported("no session URI in the answer")
        return yarl.URL(urljoin(start_url, location), encoded=True)


@dataclass(frozen=True, slots=True)
class _Answer:
    """Where the session stands: ``committed`` bytes, or done with the final headers/body."""

    committed: int
    final: dict[str, str] | None = None


async def _send(
    session: aiohttp.ClientSession,
    job: TransferJob,
    src: Path,
    size: int,
    uri: yarl.URL,
    chunk_bytes: int,
    progress: Progress,
) -> dict[str, str]:
    """Send chunks from the committed offset until the store has the whole file."""
    at = _Answer(0)
    failures = 0
    delay = job.tuning.backoff_s
    while at.final is None:
        try:
            if failures:
                at = await _status(session, job, uri, size)
                if at.final is not None:
                    break
            if at.committed >= size:  # all there but not finished: ask again after a pause
                raise Retry("the session holds every byte but has not finished")
            length = min(chunk_bytes, size - at.committed)
            at = await _put_chunk(session, job, src, uri, at.committed, length, size, progress)
            failures, delay = 0, job.tuning.backoff_s
        except (Retry, *_TRANSIENT_EXC) as exc:
            failures += 1
            cause = describe(exc)
            if failures >= job.tuning.attempts:
                raise TransferError(
                    f"upload to {job.where} failed after {failures} tries: {cause}",
                    location=job.where,
                    transient=True,
                ) from None
            job.retries += 1
            progress.resumes += 1
            log.info("upload to %s: %s; resuming in %.1f s", job.where, cause, delay)
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, job.tuning.backoff_max_s)
    return at.final


async def _put_chunk(
    session: aiohttp.ClientSession,
    job: TransferJob,
    src: Path,
    uri: yarl.URL,
    offset: int,
    length: int,
    size: int,
    progress: Progress,
) -> _Answer:
    headers = {
        "Content-Length": str(length),
        "Content-Range": f"bytes {offset}-{offset + length - 1}/{size}",
    }
    progress.bytes_sent += length
    body = file_slice(src, offset, length)
    # 308 means "resume incomplete" here, not a redirect
    async with session.put(uri, data=body, headers=headers, allow_redirects=False) as resp:
        return await _answer(resp, job)


async def _status(
    session: aiohttp.ClientSession, job: TransferJob, uri: yarl.URL, size: int
) -> _Answer:
    headers = {"Content-Length": "0", "Content-Range": f"bytes */{size}"}
    async with session.put(uri, headers=headers, allow_redirects=False) as resp:
        return await _answer(resp, job)


async def _answer(resp: aiohttp.ClientResponse, job: TransferJob) -> _Answer:
    if resp.status == 308:
        # "Range: bytes=0-N" is what the session holds; no Range header: nothing yet
        _, _, last = resp.headers.get("Range", "").partition("-")
        return _Answer(int(last) + 1 if last.isdigit() else 0)
    if resp.status in (404, 410):
        raise TransferError(
            f"upload to {job.where} failed: HTTP {resp.status} (the resumable session is gone: "
            "expired or cancelled)",
            location=job.where,
        )
    await job.check(resp, "upload to")
    final = dict(resp.headers)
    body = await resp.read()
    if body[:1] == b"{" and "X-Goog-Hash" not in final:
        # the JSON API (and the emulator behind the tests' proxy) answers an object resource
        try:
            resource = json.loads(body)
        except ValueError:
            resource = {}
        pairs = (("md5", resource.get("md5Hash")), ("crc32c", resource.get("crc32c")))
        if hashes := ",".join(f"{name}={value}" for name, value in pairs if value):
            final["X-Goog-Hash"] = hashes
    return _Answer(-1, final)  # done: what is committed no longer matters


async def _check_hashes(job: TransferJob, src: Path, md5: str, final: dict[str, str]) -> None:
    stored_md5, stored_crc = header_hashes(final)
    if stored_md5:
        if stored_md5 != md5:
            raise TransferError(
                f"upload to {job.where} failed the integrity check: the store has MD5 "
                f"{stored_md5}, the file {md5}",
                location=job.where,
            )
    elif stored_crc:
        crc = (await asyncio.to_thread(file_hashes, src, md5=False, crc32c=True)).crc32c
        if stored_crc != crc:
            raise TransferError(
                f"upload to {job.where} failed the integrity check: the store has CRC32C "
                f"{stored_crc}, the file {crc}",
                location=job.where,
            )


async def _cancel(session: aiohttp.ClientSession, uri: yarl.URL) -> None:
    """Best effort: GCS answers 499 to a cancelled session; failure here changes nothing."""
    try:
        async with asyncio.timeout(10):
            async with session.delete(uri, headers={"Content-Length": "0"}) as resp:
                await resp.read()
    except (*_TRANSIENT_EXC, aiohttp.ClientError):
        pass
