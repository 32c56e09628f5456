"""One request of a transfer, as every transfer makes it: sent to a signed URL exactly as signed,
retried with jittered exponential backoff on transient failures (408, 429, 5xx, a dropped or
reset connection, a timeout), failed at once otherwise, with errors that name the location and
never the URL's signature. app.worker.transfer and app.worker.resumable build on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import yarl

log = logging.getLogger("app.worker.transfer")  # one logger for all of a transfer
T = TypeVar("T")
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
READ_BYTES = 1 << 20
GCS_QUANTUM_BYTES = 256 << 10  # GCS takes resumable chunks in multiples of this (but the last)


@dataclass(frozen=True, slots=True)
class Tuning:
    """Sizes, parallelism and retry policy of transfers."""

    chunk_bytes: int = 64 << 20  # ranged GETs above this size
    block_bytes: int = 16 << 20  # Azure blocks above this size
    upload_chunk_bytes: int = 8 << 20  # GCS resumable chunks above this size (n x 256 KiB)
    parallel: int = 4  # chunks or blocks in flight per file
    attempts: int = 6  # tries per request
    backoff_s: float = 0.5  # first delay; doubles, jittered, up to backoff_max_s
    backoff_max_s: float = 20.0

    def __post_init__(self) -> None:
        if self.upload_chunk_bytes <= 0 or self.upload_chunk_bytes % GCS_QUANTUM_BYTES:
            raise ValueError(f"upload_chunk_bytes must be a multiple of {GCS_QUANTUM_BYTES}")


DEFAULT_TUNING = Tuning()


class TransferError(Exception):
    """A transfer failed; the message names the location (never the signature) and the cause."""

    def __init__(self, message: str, *, location: str, transient: bool = False) -> None:
        super().__init__(message)
        self.location = location
        self.transient = transient


class Retry(Exception):
    """A transient failure of one request: try it again after a pause."""


def public_location(url: str, kind: str = "") -> str:
    """The location a signed URL points at, without its query (no signature): gs://… for GCS."""
    parts = urlsplit(url)
    if kind == "gcs":
        return "gs://" + unquote(parts.path.lstrip("/"))
    return f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}"


def signed_url(url: str, **extra: str) -> yarl.URL:
    """The URL exactly as signed, plus query parameters that are not part of the signature."""
    if extra:
        tail = "&".join(f"{k}={quote(v, safe='')}" for k, v in extra.items())
        url = f"{url}&{tail}" if "?" in url else f"{url}?{tail}"
    return yarl.URL(url, encoded=True)


@dataclass
class TransferJob:
    """One transfer's shared state: where, how, and how many retries it took."""

    url: str
    kind: str
    tuning: Tuning
    retries: int = 0

    @property
    def where(self) -> str:
        return public_location(self.url, self.kind)

    async def call(self, doing: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run one request with retries on transient failures."""
        delay = self.tuning.backoff_s
        for attempt in range(1, self.tuning.attempts + 1):
            try:
                return await op()
            except (
                Retry,
                aiohttp.ClientConnectionError,
                aiohttp.ClientPayloadError,
                TimeoutError,
            ) as exc:
                cause = describe(exc)
                if attempt == self.tuning.attempts:
                    raise TransferError(
                        f"{doing} {self.where} failed after {attempt} tries: {cause}",
                        location=self.where,
                        transient=True,
                    ) from None
                self.retries += 1
                log.info("%s %s: %s; retrying in %.1f s", doing, self.where, cause, delay)
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, self.tuning.backoff_max_s)
        raise AssertionError("unreachable")

    async def check(self, resp: aiohttp.ClientResponse, doing: str) -> None:
        """Raise for an unsuccessful answer: Retry when transient, else TransferError."""
        if resp.status < 300:
            return
        code = _error_code(await resp.text(errors="replace"))
        cause = f"HTTP {resp.status}{f' {code}' if code else ''}"
        if resp.status in TRANSIENT_STATUS:
            raise Retry(cause)
        hint = {
            403: "the signed URL was refused (expired, or not for this object or operation)",
            404: "no such object",
        }.get(resp.status, "")
        raise TransferError(
            f"{doing} {self.where} failed: {cause}{f' ({hint})' if hint else ''}",
            location=self.where,
        )


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    # aiohttp puts the request URL (with its signature) into some messages: keep only the type
    if "://" in text:
        return type(exc).__name__
    return text or type(exc).__name__


def _error_code(body: str) -> str:
    start = body.find("<Code>")
    if start < 0:
        return ""
    end = body.find("</Code>", start)
    return body[start + 6 : end] if end > start else ""


def header_hashes(headers: dict[str, str]) -> tuple[str | None, str | None]:
    """(md5, crc32c) of the whole object as the response headers give them."""
    md5 = crc = None
    for item in headers.get("X-Goog-Hash", "").split(","):
        name, _, value = item.strip().partition("=")
        if name == "md5":
            md5 = value
        elif name == "crc32c":
            crc = value
    ranged = "Content-Range" in headers
    md5 = (
        md5
        or headers.get("x-ms-blob-content-md5")
        or (None if ranged else headers.get("Content-MD5"))
    )
    return md5, crc


async def file_slice(src: Path, offset: int, length: int | None):  # type: ignore[no-untyped-def]
    """Yield the bytes of ``src`` from ``offset`` (``length`` of them, or to the end)."""
    left = length
    with src.open("rb") as f:
        f.seek(offset)
        while left is None or left > 0:
            chunk = f.read(READ_BYTES if left is None else min(READ_BYTES, left))
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk
