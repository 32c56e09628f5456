"""Transfers that go on where they broke off: GCS resumable uploads, resumed ranged downloads.

Against gcp-storage-emulator through the fault proxy of tests/storage/proxy.py. The emulator
cannot start a resumable session on a signed URL (it answers 501 to the XML API's POST), so the
proxy starts it through the emulator's JSON API; the session's chunks, status queries and the
final object are the emulator's own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from app.worker.transfer import TransferError, Tuning, download, upload
from tests.storage.emulators import Gcs
from tests.storage.helpers import gcs_storage, new_bucket
from tests.storage.proxy import Proxy, fail_nth, nth, proxy_to
from tests.storage.test_transfer import Ft

pytestmark = pytest.mark.timeout(60)
CHUNK = 256 << 10
TUNING = Tuning(
    chunk_bytes=CHUNK, upload_chunk_bytes=CHUNK, backoff_s=0.01, backoff_max_s=0.05, parallel=2
)
SIZE = 5 * CHUNK + 17  # six chunks, the last one short


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _big_file(tmp_path: Path) -> Path:
    """A file of SIZE random bytes to upload."""
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(SIZE))
    return src


@asynccontextmanager
async def _resumable_proxy(gcs: Gcs) -> AsyncIterator[tuple[Proxy, aiohttp.ClientSession]]:
    """The fault proxy in front of the emulator, starting resumable sessions, and a session."""
    async with proxy_to(gcs.endpoint) as proxy, aiohttp.ClientSession() as session:
        proxy.gcs_resumable = True
        yield proxy, session


async def _upload_through(
    gcs: Gcs, proxy: Proxy, session: aiohttp.ClientSession, src: Path
) -> tuple[str, int]:
    """Upload ``src`` through the proxy; returns the object's location and the retries."""
    storage = gcs_storage(gcs)
    where = f"gs://{new_bucket(storage)}/out/big.bin"
    put = await storage.sign_put(where, 600)
    assert put.resumable_url is not None
    t = Ft(
        proxy.route(put.url, gcs.endpoint),
        "gcs",
        resumable_url=proxy.route(put.resumable_url, gcs.endpoint),
    )
    stats = await upload(session, src, t, tuning=TUNING)
    return where, stats.retries


def _stored(gcs: Gcs, where: str) -> bytes:
    bucket, _, name = where.removeprefix("gs://").partition("/")
    data: bytes = gcs_storage(gcs).client().bucket(bucket).blob(name).download_as_bytes()
    return data


def _chunk_puts(proxy: Proxy) -> list[str]:
    """The Content-Range of every chunk the proxy received, in order."""
    return [
        h.split("Content-Range: ", 1)[1].split(" ", 2)[1]
        for m, h, n in proxy.received
        if m == "PUT" and "upload_id" in h and n
    ]


async def test_a_large_output_goes_up_in_chunks_of_a_resumable_session(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    src = _big_file(tmp_path)
    async with _resumable_proxy(gcs_emulator) as (proxy, session):
        where, retries = await _upload_through(gcs_emulator, proxy, session, src)
    assert retries == 0
    assert _chunk_puts(proxy) == [
        f"{o}-{min(o + CHUNK, SIZE) - 1}/{SIZE}" for o in range(0, SIZE, CHUNK)
    ]
    assert proxy.body_bytes("PUT") == SIZE
    assert _sha(_stored(gcs_emulator, where)) == _sha(src.read_bytes())


async def test_a_503_after_the_store_took_a_chunk_resumes_without_sending_it_again(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    src = _big_file(tmp_path)
    async with _resumable_proxy(gcs_emulator) as (proxy, session):
        proxy.lose_answers.append(nth("PUT", 3, containing="upload_id"))
        where, retries = await _upload_through(gcs_emulator, proxy, session, src)
    assert retries == 1
    # the status query found the third chunk committed: every byte went up exactly once
    assert proxy.body_bytes("PUT") == SIZE
    assert any(f"Content-Range: bytes */{SIZE}" in h for m, h, _ in proxy.received if m == "PUT")
    assert len(_chunk_puts(proxy)) == 6
    assert _sha(_stored(gcs_emulator, where)) == _sha(src.read_bytes())


async def test_a_503_mid_upload_resends_only_the_chunk_it_lost(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    src = _big_file(tmp_path)
    async with _resumable_proxy(gcs_emulator) as (proxy, session):
        proxy.faults.append(fail_nth("PUT", 503, 4, containing="upload_id"))
        where, retries = await _upload_through(gcs_emulator, proxy, session, src)
    assert retries == 1
    chunks = _chunk_puts(proxy)
    assert chunks[3] == chunks[4] == f"{3 * CHUNK}-{4 * CHUNK - 1}/{SIZE}"  # resent, not restarted
    assert chunks.count(f"0-{CHUNK - 1}/{SIZE}") == 1
    assert proxy.body_bytes("PUT") == SIZE + CHUNK
    assert _sha(_stored(gcs_emulator, where)) == _sha(src.read_bytes())


async def test_a_session_that_keeps_failing_is_cancelled_and_named(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    src = _big_file(tmp_path)
    async with _resumable_proxy(gcs_emulator) as (proxy, session):
        proxy.faults.append(
            lambda m, p: web.Response(status=503) if m == "PUT" and "upload_id" in p else None
        )
        with pytest.raises(TransferError, match=r"out/big.bin failed after 6 tries: HTTP 503"):
            await _upload_through(gcs_emulator, proxy, session, src)
    assert [m for m, p, _ in proxy.seen if "upload_id" in p][-1] == "DELETE"
    assert proxy.body_bytes("PUT") == CHUNK  # the status queries carry no body


async def test_a_store_that_cannot_start_a_session_gets_one_put(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    src = _big_file(tmp_path)
    async with proxy_to(gcs_emulator.endpoint) as proxy, aiohttp.ClientSession() as session:
        where, _ = await _upload_through(gcs_emulator, proxy, session, src)
    assert [(m, status) for m, _, status in proxy.seen] == [("POST", 501), ("PUT", 200)]
    assert proxy.body_bytes("PUT") == SIZE
    assert _sha(_stored(gcs_emulator, where)) == _sha(src.read_bytes())


@pytest.mark.parametrize("size", [CHUNK // 2, 3 * CHUNK + 5], ids=["whole", "ranged"])
async def test_a_download_cut_off_goes_on_from_the_byte_it_reached(
    gcs_emulator: Gcs, tmp_path: Path, size: int
) -> None:
    storage = gcs_storage(gcs_emulator)
    where = f"gs://{new_bucket(storage)}/in/ref.bin"
    data = os.urandom(size)
    storage.client().bucket(where.split("/")[2]).blob("in/ref.bin").upload_from_string(data)
    stat = await storage.stat(where)
    get = await storage.sign_get(where, 600)
    dest = tmp_path / "ref.bin"
    async with proxy_to(gcs_emulator.endpoint) as proxy, aiohttp.ClientSession() as session:
        proxy.cut_downloads.append(nth("GET", 1))
        t = Ft(proxy.route(get.url, gcs_emulator.endpoint), "gcs", stat.size_bytes, stat.md5)
        stats = await download(session, t, dest, tuning=TUNING)
    assert stats.retries == 1
    assert _sha(dest.read_bytes()) == _sha(data)
    ranges = [
        h.split("Range: bytes=", 1)[1].split(" ", 1)[0]
        for m, h, _ in proxy.received
        if "Range: bytes=" in h
    ]
    # the ranges go 4 at once, so the cut one (the first the proxy saw) may be any of them;
    # its retry asks for the half it lacks, to the range's end, and nothing else is asked again
    resumed = [r for r in ranges if int(r.split("-")[0]) % CHUNK]
    if size <= CHUNK:
        wanted = {f"{size // 2}-"}
    else:
        starts = range(0, size, CHUNK)
        wanted = {f"{s + min(CHUNK, size - s) // 2}-{min(s + CHUNK, size) - 1}" for s in starts}
    assert len(resumed) == 1 and resumed[0] in wanted, (resumed, wanted)


async def test_a_final_answer_with_another_hash_fails_the_upload(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    src = _big_file(tmp_path)
    last = f"{5 * CHUNK}-{SIZE - 1}/{SIZE}"

    def wrong_hash(method: str, path: str) -> web.StreamResponse | None:
        if method == "PUT" and "upload_id" in path and proxy.received[-1][1].count(last):
            return web.json_response({"md5Hash": "AAAAAAAAAAAAAAAAAAAAAA=="}, status=200)
        return None

    async with _resumable_proxy(gcs_emulator) as (proxy, session):
        proxy.faults.append(wrong_hash)
        with pytest.raises(TransferError, match="failed the integrity check: the store has MD5"):
            await _upload_through(gcs_emulator, proxy, session, src)
    assert [m for m, p, _ in proxy.seen if "upload_id" in p][-1] == "DELETE"
