"""Google Cloud Storage for a GCE pool: V4 signed URLs, object stats, scratch checks, clean-up.

Signed URLs are signed with a service account's key. When the caller's own credentials hold
one (a key file), they sign locally; otherwise (user credentials from ``gcloud auth``, a VM's
metadata credentials) the pool names a ``signing_service_account`` that the user may
impersonate, and each signature is made by the IAM Credentials API's signBlob for that account
(the user needs roles/iam.serviceAccountTokenCreator on it; docs/clouds.md).

The SDK is synchronous and imported at first use; every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from app.clouds.base import ObjectStat, ScratchCheck, SignedUrl
from app.clouds.gcp.config import is_loopback_http
from app.errors import CloudError, NotFoundError
from app.models.locations import CloudLocation, LocationError, StorageKind, parse_cloud

PUBLIC_ENDPOINT = "https://storage.googleapis.com"
IAM_ENDPOINT = "https://iamcredentials.googleapis.com"
# V4 signed URLs live at most 7 days; LabBatch signs for one attempt.
MAX_TTL_S = 7 * 24 * 3600
_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
_CHECK_NAME = ".labbatch-scratch-check-"
# the signed header of a POST that starts a resumable upload session (XML API)
RESUMABLE_START = {"x-goog-resumable": "start"}
SIGN_HINT = (
    "your Google credentials cannot sign URLs (only a service-account key can); set the pool's "
    "signing_service_account to a service account you may impersonate "
    "(roles/iam.serviceAccountTokenCreator), see docs/clouds.md"
)


@dataclass(frozen=True, slots=True)
class GcsSettings:
    """How one pool reaches Cloud Storage."""

    project: str | None = None
    # the account whose signatures the URLs carry when the credentials cannot sign
    signing_service_account: str | None = None
    # bill reads of requester-pays buckets to this project (added to every request and URL)
    user_project: str | None = None
    endpoint: str | None = None  # another API address: the emulator in tests (loopback http)
    iam_endpoint: str | None = None


def gcs_location(location: str) -> CloudLocation:
    """Parse a ``gs://`` location, refusing other clouds' locations."""
    try:
        parsed = parse_cloud(location)
    except LocationError as exc:
        raise CloudError(str(exc)) from exc
    if parsed is None or parsed.kind is not StorageKind.GCS:
        raise CloudError(f"{location}: not a gs:// location (this pool's storage is GCS)")
    return parsed


class GcsStorage:
    """The StorageSigner of a GCE pool."""

    kind = "gcs"

    def __init__(self, settings: GcsSettings, *, credentials: Any = None) -> None:
        self.settings = settings
        self._credentials = credentials
        self._client: Any = None
        self._signer: Any = None

    # -- the StorageSigner interface ----------------------------------------------------

    async def sign_get(self, location: str, ttl_s: float) -> SignedUrl:
        """A V4 signed URL that reads exactly this object for ``ttl_s`` seconds."""
        return await asyncio.to_thread(self._sign, location, ttl_s, "GET")

    async def sign_put(self, location: str, ttl_s: float) -> SignedUrl:
        """A V4 signed URL that writes exactly this object for ``ttl_s`` seconds, and one
        that starts a resumable upload session of it (large outputs go up in chunks)."""
        return await asyncio.to_thread(self._sign_put, location, ttl_s)

    async def stat(self, location: str) -> ObjectStat:
        """Size, generation, md5 and crc32c of one object."""
        return await asyncio.to_thread(self._stat, location)

    async def delete_prefix(self, location: str, *, max_objects: int | None = None) -> int:
        """Delete the objects under the prefix (at most ``max_objects``); returns how many."""
        return await asyncio.to_thread(self._delete_prefix, location, max_objects)

    async def list_children(self, location: str) -> list[str]:
        """The names of the "folders" directly under the prefix (``5`` for ``<prefix>/5/…``)."""
        return await asyncio.to_thread(self._list_children, location)

    async def download_to(self, location: str, path: str) -> int:
        """Copy one object to ``path`` (the SDK checks its checksum); returns its size."""
        return await asyncio.to_thread(self._download_to, location, path)

    async def check_scratch(self, location: str, *, region: str | None = None) -> ScratchCheck:
        """Whether the bucket exists, the caller can write there, and it is in ``region``."""
        return await asyncio.to_thread(self._check_scratch, location, region)

    async def egress_warning(self, location: str, region: str) -> str | None:
        """A warning when the bucket keeps its data outside ``region`` (None: same region, or
        the bucket cannot be read)."""
        return await asyncio.to_thread(self._egress_warning, location, region)

    # -- blocking halves -----------------------------------------------------------------

    def _egress_warning(self, location: str, region: str) -> str | None:
        where = gcs_location(location)
        try:
            bucket = self.client().get_bucket(where.bucket, timeout=30)
        except Exception:
            return None  # unreadable buckets fail the attempt with their own message
        warnings = _region_warnings(where, (bucket.location or "").lower() or None, region)
        return warnings[0] if warnings else None

    def client(self) -> Any:
        """The storage client, made at first use."""
        if self._client is None:
            from google.cloud import storage  # type: ignore[attr-defined,unused-ignore]

            options = {"api_endpoint": self.settings.endpoint} if self.settings.endpoint else None
            self._client = storage.Client(
                project=self.settings.project,
                credentials=self._client_credentials(),
                client_options=options,
            )
        return self._client

    def _client_credentials(self) -> Any:
        # plain http goes only to this machine (the emulator): never send real credentials there
        if is_loopback_http(self.settings.endpoint):
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        return self._credentials

    def _bucket(self, where: CloudLocation) -> Any:
        return self.client().bucket(where.bucket, user_project=self.settings.user_project)

    def _sign_put(self, location: str, ttl_s: float) -> SignedUrl:
        put = self._sign(location, ttl_s, "PUT")
        # the session a signed POST starts lives a week at most on GCS, like the URL itself
        start = self._signed_url(gcs_location(location), location, ttl_s, "POST", RESUMABLE_START)
        return replace(put, resumable_url=start)

    def _sign(self, location: str, ttl_s: float, method: str) -> SignedUrl:
        where = gcs_location(location)
        url = self._signed_url(where, location, ttl_s, method)
        ttl = _ttl(ttl_s)
        return SignedUrl(url=url, kind=self.kind, public=str(where), expires_at=time.time() + ttl)

    def _signed_url(
        self,
        where: CloudLocation,
        location: str,
        ttl_s: float,
        method: str,
        headers: dict[str, str] | None = None,
    ) -> str:
        if not where.path or where.path.endswith("/"):
            raise CloudError(f"{location}: names no object (a signed URL is for one object)")
        query = {"userProject": self.settings.user_project} if self.settings.user_project else {}
        try:
            url: str = (
                self._bucket(where)
                .blob(where.path)
                .generate_signed_url(
                    version="v4",
                    expiration=timedelta(seconds=_ttl(ttl_s)),
                    method=method,
                    headers=headers,
                    credentials=self._signing_credentials(),
                    api_access_endpoint=self.settings.endpoint or PUBLIC_ENDPOINT,
                    query_parameters=query or None,
                )
            )
        except CloudError:
            raise
        except Exception as exc:
            raise _translate(exc, location, "sign a URL for") from exc
        return url

    def _signing_credentials(self) -> Any:
        if self._signer is not None:
            return self._signer
        from google.auth.credentials import Signing

        credentials = self._credentials
        emulator = is_loopback_http(self.settings.endpoint)
        if credentials is None and emulator and not self.settings.signing_service_account:
            # the emulator checks no signature: sign with a key made now, never a real one
            self._signer = _throwaway_signer()
            return self._signer
        if credentials is None:
            import google.auth

            credentials, _ = google.auth.default(scopes=[_SCOPE])
            self._credentials = credentials
        if self.settings.signing_service_account:
            from app.clouds.gcp.iam_signer import IamSigner

            self._signer = IamSigner(
                credentials,
                self.settings.signing_service_account,
                endpoint=self.settings.iam_endpoint or IAM_ENDPOINT,
            )
        elif isinstance(credentials, Signing):
            self._signer = credentials
        else:
            raise CloudError(SIGN_HINT)
        return self._signer

    def _stat(self, location: str) -> ObjectStat:
        where = gcs_location(location)
        try:
            blob = self._bucket(where).get_blob(where.path)
        except Exception as exc:
            raise _translate(exc, location, "read the metadata of") from exc
        if blob is None:
            raise NotFoundError(f"{location}: no such object")
        return ObjectStat(
            location=str(where),
            size_bytes=int(blob.size or 0),
            generation=str(blob.generation),
            md5=blob.md5_hash,
            crc32c=blob.crc32c,
        )

    def _download_to(self, location: str, path: str) -> int:
        where = gcs_location(location)
        try:
            blob = self._bucket(where).blob(where.path)
            blob.download_to_filename(path, checksum="md5")
        except Exception as exc:
            raise _translate(exc, location, "download") from exc
        return os.path.getsize(path)

    def _delete_prefix(self, location: str, max_objects: int | None) -> int:
        where = gcs_location(location)
        prefix = where.as_prefix()
        if not prefix:
            raise CloudError(f"{location}: refusing to delete a whole bucket; name a prefix")
        deleted = 0
        try:
            blobs = self.client().list_blobs(
                self._bucket(where), prefix=prefix, max_results=max_objects
            )
            for blob in blobs:
                if max_objects is not None and deleted >= max_objects:
                    break  # not every server honours max_results (the emulator does not)
                try:
                    blob.delete()
                except Exception as exc:
                    if _status(exc) != 404:
                        raise
                    continue  # gone since the listing (the batch's delete and a sweep at once)
                deleted += 1
        except Exception as exc:
            raise _translate(exc, location, "delete the objects under") from exc
        return deleted

    def _list_children(self, location: str) -> list[str]:
        where = gcs_location(location)
        prefix = where.as_prefix()
        try:
            blobs = self.client().list_blobs(self._bucket(where), prefix=prefix, delimiter="/")
            for _ in blobs.pages:  # the "folders" are collected page by page
                pass
        except Exception as exc:
            raise _translate(exc, location, "list the objects under") from exc
        return sorted(p[len(prefix) :].rstrip("/") for p in blobs.prefixes)

    def _check_scratch(self, location: str, region: str | None) -> ScratchCheck:
        try:
            where = gcs_location(location)
        except CloudError as exc:
            return ScratchCheck(location, problems=(str(exc),))
        try:
            bucket = self.client().get_bucket(where.bucket, timeout=30)
        except Exception as exc:
            return ScratchCheck(location, problems=(_why_unusable(exc, where, "read"),))
        bucket_region = (bucket.location or "").lower() or None
        warnings = _region_warnings(where, bucket_region, region)
        probe = self._bucket(where).blob(where.join(_CHECK_NAME + secrets.token_hex(6)).path)
        try:
            probe.upload_from_string(b"labbatch scratch check\n")
            probe.delete()
        except Exception as exc:
            problem = _why_unusable(exc, where, "write")
            return ScratchCheck(location, (problem,), warnings, bucket_region)
        return ScratchCheck(location, (), warnings, bucket_region)


def _ttl(ttl_s: float) -> int:
    return int(min(max(ttl_s, 1), MAX_TTL_S))


def _throwaway_signer() -> Any:
    """Service-account credentials with a key made in memory (loopback emulators only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "client_email": "emulator@localhost.iam.gserviceaccount.com",
        "private_key": pem,
        "token_uri": "http://127.0.0.1:9/token",
    }
    return service_account.Credentials.from_service_account_info(info)


def _region_warnings(
    where: CloudLocation, bucket_region: str | None, pool_region: str | None
) -> tuple[str, ...]:
    if not bucket_region or not pool_region:
        return ()
    pool = pool_region.lower()
    if bucket_region == pool or pool.startswith(bucket_region + "-"):
        return ()
    multi = bucket_region in ("us", "eu", "asia") or "+" in bucket_region
    if multi and pool.split("-")[0].startswith(bucket_region.split("+")[0][:2]):
        return ()
    return (
        f"bucket {where.bucket} keeps its data in {bucket_region}, the pool runs in {pool}: "
        "every byte the workers read or write crosses regions and is billed as network egress "
        "(about $0.01-0.02 per GB within a continent, $0.05-0.12 between continents); "
        "a bucket in the pool's region costs nothing to reach",
    )


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def _why_unusable(exc: BaseException, where: CloudLocation, doing: str) -> str:
    status = _status(exc)
    if status == 404:
        return f"there is no bucket named {where.bucket} (create it in the pool's region first)"
    if status in (401, 403):
        return (
            f"you may not {doing} objects in bucket {where.bucket}: grant your account (and the "
            "signing service account) roles/storage.objectAdmin on the bucket"
        )
    return str(_translate(exc, str(where), f"{doing} objects in"))


def _translate(exc: BaseException, location: str, doing: str) -> CloudError | NotFoundError:
    """Turn a google-cloud-storage / google-auth failure into a CloudError naming the object."""
    from google.auth import exceptions as auth_exc

    if isinstance(exc, auth_exc.DefaultCredentialsError | auth_exc.RefreshError):
        return CloudError(
            f"Cloud Storage: could not {doing} {location}: no usable Google credentials; "
            "run `gcloud auth application-default login`"
        )
    status = _status(exc)
    message = getattr(exc, "message", None) or str(exc)
    if status == 404:
        return NotFoundError(f"Cloud Storage: could not {doing} {location}: not found")
    if status in (401, 403):
        return CloudError(
            f"Cloud Storage: could not {doing} {location}: permission denied ({message})"
        )
    transient = status is None or status == 429 or status >= 500
    return CloudError(
        f"Cloud Storage: could not {doing} {location}: {message}", transient=transient
    )
