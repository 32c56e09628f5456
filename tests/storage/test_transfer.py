"""Worker transfers through real signed URLs: GCS emulator and Azurite, with injected faults."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from app.clouds.base import SignedUrl
from app.worker.transfer import TransferError, Tuning, download, upload
from tests.storage.emulators import AZURITE_ACCOUNT, Azurite, Gcs
from tests.storage.helpers import blob_storage, gcs_storage, new_bucket, new_container
from tests.storage.proxy import fail_once, proxy_to

FAST = Tuning(
    chunk_bytes=1 << 20,
    block_bytes=1 << 20,
    upload_chunk_bytes=1 << 20,
    backoff_s=0.01,
    backoff_max_s=0.05,
)


@dataclass(frozen=True, slots=True)
class Ft:
    """The fields of app.protocol.FileTransfer that transfers read."""

    url: str
    kind: str
    size_bytes: int | None = None
    md5: str | None = None
    crc32c: str | None = None
    resumable_url: str | None = None


def _file(path: Path, size: int) -> str:
    path.write_bytes(os.urandom(size))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_secret_free(text: str, signed: SignedUrl) -> None:
    query = signed.url.split("?", 1)[1]
    for part in query.split("&"):
        if part.lower().startswith(("x-goog-signature", "sig=")):
            assert part not in text


@pytest.mark.parametrize("size", [1000, 5 * (1 << 20) + 17])
async def test_gcs_round_trip_through_signed_urls(
    gcs_emulator: Gcs, tmp_path: Path, size: int
) -> None:
    storage = gcs_storage(gcs_emulator)
    where = f"gs://{new_bucket(storage)}/out/data.bin"
    src, back = tmp_path / "src.bin", tmp_path / "in" / "data.bin"
    digest = _file(src, size)
    async with aiohttp.ClientSession() as session:
        put = await storage.sign_put(where, 600)
        # the emulator cannot start a session on a signed URL (501): one PUT instead
        sent = await upload(
            session, src, Ft(put.url, "gcs", resumable_url=put.resumable_url), tuning=FAST
        )
        stat = await storage.stat(where)
        get = await storage.sign_get(where, 600)
        t = Ft(get.url, "gcs", stat.size_bytes, stat.md5, stat.crc32c)
        got = await download(session, t, back, tuning=FAST)
    assert sent.size_bytes == got.size_bytes == size
    assert _sha(back) == digest and not back.with_name("data.bin.part").exists()


@pytest.mark.parametrize("size", [1000, 3 * (1 << 20) + 5])
async def test_azure_round_trip_through_sas_urls(
    azurite: Azurite, tmp_path: Path, size: int
) -> None:
    storage = blob_storage(azurite)
    where = f"{new_container(storage)}/out/data.bin"
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    digest = _file(src, size)
    async with aiohttp.ClientSession() as session:
        put = await storage.sign_put(where, 600)
        await upload(session, src, Ft(put.url, "azure"), tuning=FAST)
        stat = await storage.stat(where)
        get = await storage.sign_get(where, 600)
        await download(session, Ft(get.url, "azure", stat.size_bytes, stat.md5), back, tuning=FAST)
    assert _sha(back) == digest
    assert stat.md5 == base64.b64encode(hashlib.md5(src.read_bytes()).digest()).decode()


async def test_a_transient_503_on_an_upload_is_retried(gcs_emulator: Gcs, tmp_path: Path) -> None:
    storage = gcs_storage(gcs_emulator)
    where = f"gs://{new_bucket(storage)}/out/x.bin"
    src = tmp_path / "x.bin"
    digest = _file(src, 4096)
    async with proxy_to(gcs_emulator.endpoint) as proxy, aiohttp.ClientSession() as session:
        proxy.faults.append(fail_once("PUT", 503))
        put = await storage.sign_put(where, 600)
        stats = await upload(
            session, src, Ft(proxy.route(put.url, gcs_emulator.endpoint), "gcs"), tuning=FAST
        )
        get = await storage.sign_get(where, 600)
        await download(session, Ft(get.url, "gcs"), tmp_path / "back", tuning=FAST)
    assert stats.retries == 1
    assert [status for method, _, status in proxy.seen if method == "PUT"] == [503, 200]
    assert _sha(tmp_path / "back") == digest


async def test_azure_block_retried_alone_and_persistent_failure_named(
    azurite: Azurite, tmp_path: Path
) -> None:
    storage = blob_storage(azurite)
    where = f"{new_container(storage)}/big.bin"
    src = tmp_path / "big.bin"
    digest = _file(src, 3 * (1 << 20))
    upstream = f"http://127.0.0.1:{azurite.port}"
    async with proxy_to(upstream) as proxy, aiohttp.ClientSession() as session:
        proxy.faults.append(fail_once("PUT", 500, containing="blockid=MDAwMDAwMDE"))
        put = await storage.sign_put(where, 600)
        stats = await upload(session, src, Ft(proxy.route(put.url, upstream), "azure"), tuning=FAST)
        assert stats.retries == 1
        blocks = [p for m, p, _ in proxy.seen if m == "PUT" and "comp=block&" in p]
        assert len(blocks) == 4  # three blocks, one of them twice
        get = await storage.sign_get(where, 600)
        await download(session, Ft(get.url, "azure", 3 << 20), tmp_path / "b", tuning=FAST)
        assert _sha(tmp_path / "b") == digest
        proxy.faults.append(lambda m, p: web.Response(status=503))
        with pytest.raises(TransferError, match="failed after 6 tries: HTTP 503") as failed:
            await upload(session, src, Ft(proxy.route(put.url, upstream), "azure"), tuning=FAST)
    assert failed.value.location.endswith(f"/{AZURITE_ACCOUNT}/{where.rsplit('/', 2)[1]}/big.bin")
    _assert_secret_free(str(failed.value), put)


async def test_integrity_failure_is_detected(gcs_emulator: Gcs, tmp_path: Path) -> None:
    storage = gcs_storage(gcs_emulator)
    where = f"gs://{new_bucket(storage)}/in/ref.fa"
    storage.client().bucket(where.split("/")[2]).blob("in/ref.fa").upload_from_string(b"ACGT" * 99)
    stat = await storage.stat(where)
    get = await storage.sign_get(where, 600)
    dest = tmp_path / "attempt" / "ref.fa"
    async with proxy_to(gcs_emulator.endpoint) as proxy, aiohttp.ClientSession() as session:
        proxy.corrupt_downloads = True
        t = Ft(proxy.route(get.url, gcs_emulator.endpoint), "gcs", stat.size_bytes, stat.md5)
        with pytest.raises(TransferError, match=f"{where} failed the integrity check: MD5"):
            await download(session, t, dest, tuning=FAST)
        # without a stat, the response's own X-Goog-Hash catches it
        t = Ft(proxy.route(get.url, gcs_emulator.endpoint), "gcs")
        with pytest.raises(TransferError, match="integrity check"):
            await download(session, t, dest, tuning=FAST)
    assert list(dest.parent.iterdir()) == []  # no half-written file left behind


async def test_refused_and_missing_urls_fail_at_once_naming_the_location(
    azurite: Azurite, tmp_path: Path
) -> None:
    storage = blob_storage(azurite)
    root = new_container(storage)
    get = await storage.sign_get(f"{root}/missing.txt", 600)
    tampered = get.url.replace("sp=r", "sp=rw")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TransferError, match="HTTP 404 BlobNotFound") as missing:
            await download(session, Ft(get.url, "azure"), tmp_path / "m", tuning=FAST)
        with pytest.raises(TransferError, match=r"HTTP 403 .*signed URL was refused") as refused:
            await download(session, Ft(tampered, "azure"), tmp_path / "m", tuning=FAST)
        with pytest.raises(TransferError, match="cannot read nope"):
            await upload(session, tmp_path / "nope", Ft(get.url, "azure"), tuning=FAST)
    assert "missing.txt" in str(missing.value)
    for error in (missing.value, refused.value):
        _assert_secret_free(str(error), get)
