"""GCS storage of a GCE pool against gcp-storage-emulator with the real google-cloud-storage."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yarl
from google.auth.credentials import AnonymousCredentials

from app.clouds.gcp.storage import GcsSettings, GcsStorage
from app.errors import CloudError, NotFoundError
from tests.storage.emulators import Gcs
from tests.storage.helpers import gcs_storage, new_bucket
from tests.storage.keys import SA_EMAIL, fake_iam, sign


async def test_signed_urls_read_and_write_exactly_one_object(gcs_emulator: Gcs) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    put = await storage.sign_put(f"gs://{bucket}/runs/a b.txt", ttl_s=600)
    get = await storage.sign_get(f"gs://{bucket}/runs/a b.txt", ttl_s=600)
    assert "X-Goog-Signature" in put.url and put.public == f"gs://{bucket}/runs/a b.txt"
    assert "Signature" not in repr(put) and "X-Goog" not in repr(get)
    query = parse_qs(urlsplit(get.url).query)
    assert query["X-Goog-Expires"] == ["600"]
    assert query["X-Goog-Credential"][0].startswith(SA_EMAIL)
    async with aiohttp.ClientSession() as session:
        async with session.put(yarl.URL(put.url, encoded=True), data=b"payload") as resp:
            assert resp.status == 200
        async with session.get(yarl.URL(get.url, encoded=True)) as resp:
            assert await resp.read() == b"payload"
    stat = await storage.stat(f"gs://{bucket}/runs/a b.txt")
    assert stat.size_bytes == 7 and stat.md5 and stat.crc32c
    assert stat.cache_key == f"gs://{bucket}/runs/a b.txt#{stat.generation}"


async def test_signing_goes_through_the_pool_service_account_when_credentials_cannot(
    gcs_emulator: Gcs,
) -> None:
    with fake_iam() as iam:
        storage = GcsStorage(
            GcsSettings(
                project="test",
                endpoint=gcs_emulator.endpoint,
                signing_service_account=SA_EMAIL,
                iam_endpoint=iam.endpoint,
            ),
            credentials=AnonymousCredentials(),
        )
        signed = await storage.sign_get("gs://bkt/obj.txt", ttl_s=60)
        assert [account for account, _ in iam.signed] == [SA_EMAIL]
        payload = iam.signed[0][1]
        assert payload.startswith(b"GOOG4-RSA-SHA256")
        signature = parse_qs(urlsplit(signed.url).query)["X-Goog-Signature"][0]
        assert signature == sign(payload).hex()
        iam.refuse = True
        with pytest.raises(CloudError, match="serviceAccountTokenCreator"):
            await GcsStorage(storage.settings, credentials=AnonymousCredentials()).sign_put(
                "gs://bkt/obj.txt", ttl_s=60
            )


async def test_credentials_that_cannot_sign_say_what_to_set(gcs_emulator: Gcs) -> None:
    storage = GcsStorage(
        GcsSettings(project="test", endpoint=gcs_emulator.endpoint),
        credentials=AnonymousCredentials(),
    )
    with pytest.raises(CloudError, match="signing_service_account"):
        await storage.sign_get("gs://bkt/obj", ttl_s=60)
    with pytest.raises(CloudError, match="names no object"):
        await gcs_storage(gcs_emulator).sign_get("gs://bkt/dir/", ttl_s=60)
    with pytest.raises(CloudError, match="not a gs:// location"):
        await gcs_storage(gcs_emulator).sign_get("az://acct/cont/x", ttl_s=60)


async def test_stat_of_a_missing_object_and_delete_prefix(gcs_emulator: Gcs) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    with pytest.raises(NotFoundError, match=f"gs://{bucket}/nope"):
        await storage.stat(f"gs://{bucket}/nope")
    b = storage.client().bucket(bucket)
    for name in ("scratch/1/a", "scratch/1/b", "scratch/10/c", "keep/d"):
        b.blob(name).upload_from_string(b"x")
    assert await storage.delete_prefix(f"gs://{bucket}/scratch/1") == 2
    left = sorted(blob.name for blob in storage.client().list_blobs(bucket))
    assert left == ["keep/d", "scratch/10/c"]
    with pytest.raises(CloudError, match="whole bucket"):
        await storage.delete_prefix(f"gs://{bucket}")


async def test_scratch_check_says_what_is_wrong(gcs_emulator: Gcs) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    ok = await storage.check_scratch(f"gs://{bucket}/scratch", region="us-central1")
    assert ok.ok and ok.warnings == () and ok.region == "us"
    far = await storage.check_scratch(f"gs://{bucket}/scratch", region="europe-west1")
    assert far.ok
    assert "egress" in far.warnings[0] and "europe-west1" in far.warnings[0]
    missing = await storage.check_scratch("gs://no-such-bucket-x/scratch")
    assert not missing.ok
    assert "no bucket named no-such-bucket-x" in missing.problems[0]
    bad = await storage.check_scratch("gs://UPPER/x")
    assert "not a valid bucket name" in bad.problems[0]
    assert list(storage.client().list_blobs(bucket)) == []


async def test_requester_pays_project_goes_into_every_signed_url(gcs_emulator: Gcs) -> None:
    storage = gcs_storage(gcs_emulator, user_project="lab-billing")
    for signed in (
        await storage.sign_get("gs://pays-bucket/ref.fa", 60),
        await storage.sign_put("gs://pays-bucket/out.txt", 60),
    ):
        assert parse_qs(urlsplit(signed.url).query)["userProject"] == ["lab-billing"]
