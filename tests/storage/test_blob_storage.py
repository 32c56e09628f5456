"""Azure Blob storage of an Azure pool against Azurite with the real azure-storage-blob."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yarl

from app.clouds.azure.storage import BlobStorage
from app.errors import CloudError, NotFoundError
from tests.storage.emulators import (
    AZURITE_ACCOUNT,
    Azurite,
)
from tests.storage.helpers import blob_storage, new_container


async def test_sas_urls_read_and_write_exactly_one_blob(azurite: Azurite) -> None:
    storage = blob_storage(azurite)
    root = new_container(storage)
    put = await storage.sign_put(f"{root}/runs/a b.txt", ttl_s=600)
    get = await storage.sign_get(f"{root}/runs/a b.txt", ttl_s=600)
    assert put.public.endswith("/runs/a b.txt") and "sig=" not in repr(put)
    assert parse_qs(urlsplit(get.url).query)["sp"] == ["r"]
    async with aiohttp.ClientSession() as session:
        url = yarl.URL(put.url, encoded=True)
        headers = {"x-ms-blob-type": "BlockBlob"}
        async with session.put(url, data=b"payload", headers=headers) as resp:
            assert resp.status == 201
        async with session.get(yarl.URL(get.url, encoded=True)) as resp:
            assert await resp.read() == b"payload"
        # the read URL cannot write, and neither URL reaches another blob
        async with session.put(yarl.URL(get.url, encoded=True), data=b"x", headers=headers) as r:
            assert r.status == 403
        other = get.url.replace("a%20b.txt", "other.txt")
        async with session.get(yarl.URL(other, encoded=True)) as resp:
            assert resp.status == 403
    stat = await storage.stat(f"{root}/runs/a b.txt")
    assert stat.size_bytes == 7 and stat.md5 and stat.generation
    assert stat.location.startswith(f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/")


async def test_stat_missing_delete_prefix_and_bad_locations(azurite: Azurite) -> None:
    storage = blob_storage(azurite)
    root = new_container(storage)
    with pytest.raises(NotFoundError, match="nope"):
        await storage.stat(f"{root}/nope")
    container = storage.service(AZURITE_ACCOUNT).get_container_client(root.rsplit("/", 1)[1])
    for name in ("scratch/1/a", "scratch/1/b", "scratch/10/c", "keep/d"):
        container.upload_blob(name, b"x")
    assert await storage.delete_prefix(f"{root}/scratch/1/") == 2
    assert sorted(container.list_blob_names()) == ["keep/d", "scratch/10/c"]
    with pytest.raises(CloudError, match="whole container"):
        await storage.delete_prefix(root)
    with pytest.raises(CloudError, match="not an Azure Blob location"):
        await storage.sign_get("gs://bucket/x", ttl_s=60)


async def test_scratch_check_says_what_is_wrong(azurite: Azurite) -> None:
    storage = blob_storage(azurite)
    root = new_container(storage)
    ok = await storage.check_scratch(f"{root}/scratch")
    assert ok.ok, ok.problems
    missing = await storage.check_scratch(f"az://{AZURITE_ACCOUNT}/nosuchcontainer/scratch")
    assert "no container named nosuchcontainer" in missing.problems[0]
    wrong_key = BlobStorage(
        storage.settings,
        credential={"account_name": AZURITE_ACCOUNT, "account_key": "QUJD" * 22},
    )
    denied = await wrong_key.check_scratch(f"{root}/scratch")
    assert "Storage Blob Data Contributor" in denied.problems[0]
