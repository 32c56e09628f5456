"""Azure Blob storage for an Azure pool: SAS URLs, blob stats, scratch checks, clean-up.

A SAS is made for exactly one blob. With a token credential (DefaultAzureCredential: the
user's Entra ID sign-in) it is a **user-delegation SAS**, signed with a delegation key the
storage account hands out for at most 7 days (the user needs "Storage Blob Data Contributor",
which includes generateUserDelegationKey); no account key is ever read. With an account key
(``AZURE_STORAGE_KEY``, Azurite in tests) it is an account-key SAS: the least-privilege
fall-back for accounts where Entra ID sign-in is off (docs/clouds.md).

The SDK is synchronous here and imported at first use; every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.clouds.azure.config import is_loopback_http
from app.clouds.base import ObjectStat, ScratchCheck, SignedUrl
from app.errors import CloudError, NotFoundError
from app.models.locations import (
    AZURE_HOST_SUFFIX,
    CloudLocation,
    LocationError,
    StorageKind,
    parse_cloud,
)

MAX_TTL_S = 7 * 24 * 3600
# an account key to sign with instead of a user delegation key (the az CLI's variable)
ACCOUNT_KEY_ENV = "AZURE_STORAGE_KEY"
# a SAS starts a little in the past: the storage service's clock may be behind ours
CLOCK_SKEW_S = 300
# how long a delegation key is asked for; it is reused until it would expire within a URL's life
DELEGATION_KEY_S = 6 * 3600
_CHECK_NAME = ".labbatch-scratch-check-"
ROLE_HINT = (
    "grant your account the 'Storage Blob Data Contributor' role on the storage account "
    "or container (docs/clouds.md)"
)


@dataclass(frozen=True, slots=True)
class BlobSettings:
    """How one pool reaches Azure Blob storage."""

    # another blob endpoint for every account (Azurite in tests: http://127.0.0.1:P/devstoreaccount1)
    endpoint: str | None = None
    # the REST API version to speak (Azurite accepts older ones than the SDK's default)
    api_version: str | None = None


def blob_location(location: str) -> CloudLocation:
    """Parse an Azure Blob location, refusing other clouds' locations."""
    try:
        parsed = parse_cloud(location)
    except LocationError as exc:
        raise CloudError(str(exc)) from exc
    if parsed is None or parsed.kind is not StorageKind.AZURE:
        raise CloudError(f"{location}: not an Azure Blob location (this pool's storage is Azure)")
    return parsed


class BlobStorage:
    """The StorageSigner of an Azure pool.

    ``credential`` is a TokenCredential (user-delegation SAS), an ``AzureNamedKeyCredential``
    or a ``{"account_name", "account_key"}`` dict (account-key SAS); None: DefaultAzureCredential.
    """

    kind = "azure"

    def __init__(self, settings: BlobSettings, *, credential: Any = None) -> None:
        if settings.endpoint and not (
            settings.endpoint.startswith("https://") or is_loopback_http(settings.endpoint)
        ):
            raise CloudError(f"{settings.endpoint}: plain http is only allowed to this machine")
        self.settings = settings
        self._credential = credential
        self._clients: dict[str, Any] = {}
        self._delegation: dict[str, Any] = {}
        self._lock = threading.Lock()

    async def sign_get(self, location: str, ttl_s: float) -> SignedUrl:
        """A SAS URL that reads exactly this blob for ``ttl_s`` seconds."""
        return await asyncio.to_thread(self._sign, location, ttl_s, "r")

    async def sign_put(self, location: str, ttl_s: float) -> SignedUrl:
        """A SAS URL that creates or overwrites exactly this blob (whole or in blocks)."""
        return await asyncio.to_thread(self._sign, location, ttl_s, "cw")

    async def stat(self, location: str) -> ObjectStat:
        """Size, ETag and Content-MD5 of one blob."""
        return await asyncio.to_thread(self._stat, location)

    async def delete_prefix(self, location: str, *, max_objects: int | None = None) -> int:
        """Delete the blobs under the prefix (at most ``max_objects``); returns how many."""
        return await asyncio.to_thread(self._delete_prefix, location, max_objects)

    async def list_children(self, location: str) -> list[str]:
        """The names of the "folders" directly under the prefix (``5`` for ``<prefix>/5/…``)."""
        return await asyncio.to_thread(self._list_children, location)

    async def download_to(self, location: str, path: str) -> int:
        """Copy one blob to ``path``; returns its size."""
        return await asyncio.to_thread(self._download_to, location, path)

    async def check_scratch(self, location: str, *, region: str | None = None) -> ScratchCheck:
        """Whether the container exists and the caller can write there.

        The account's region is not visible through the blob API (it needs the management
        API), so no region warning is given for Azure.
        """
        return await asyncio.to_thread(self._check_scratch, location)

    async def egress_warning(self, location: str, region: str) -> str | None:
        """None: the blob API does not tell a storage account's region."""
        return None

    # -- blocking halves -----------------------------------------------------------------

    def account_url(self, account: str) -> str:
        """The blob endpoint of ``account``."""
        return self.settings.endpoint or f"https://{account}{AZURE_HOST_SUFFIX}"

    def service(self, account: str) -> Any:
        """The BlobServiceClient of one storage account, made at first use."""
        with self._lock:
            if account not in self._clients:
                from azure.storage.blob import BlobServiceClient

                options: dict[str, Any] = {}
                if self.settings.api_version:
                    options["api_version"] = self.settings.api_version
                self._clients[account] = BlobServiceClient(
                    self.account_url(account), credential=self._credential_for(account), **options
                )
            return self._clients[account]

    def _credential_for(self, account: str) -> Any:
        if self._credential is not None:
            return self._credential
        if key := os.environ.get(ACCOUNT_KEY_ENV):
            return {"account_name": account, "account_key": key}
        from azure.identity import DefaultAzureCredential

        self._credential = DefaultAzureCredential()
        return self._credential

    def _account_key(self, account: str) -> str | None:
        credential = self._credential_for(account)
        if isinstance(credential, dict):
            return str(credential["account_key"])
        named = getattr(credential, "named_key", None)
        return str(named.key) if named is not None else None

    def _sign(self, location: str, ttl_s: float, permission: str) -> SignedUrl:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        where = blob_location(location)
        if not where.path or where.path.endswith("/"):
            raise CloudError(f"{location}: names no blob (a SAS URL is for one blob)")
        assert where.account is not None
        ttl = int(min(max(ttl_s, 1), MAX_TTL_S))
        now = datetime.now(UTC)
        expiry = now + timedelta(seconds=ttl)
        key = self._account_key(where.account)
        try:
            sas = generate_blob_sas(
                where.account,
                where.bucket,
                where.path,
                account_key=key,
                user_delegation_key=None if key else self._delegation_key(where, expiry),
                permission=BlobSasPermissions.from_string(permission),
                expiry=expiry,
                start=now - timedelta(seconds=CLOCK_SKEW_S),
                protocol=None if self.settings.endpoint else "https",
            )
        except CloudError:
            raise
        except Exception as exc:
            raise _translate(exc, location, "sign a URL for") from exc
        blob = self.service(where.account).get_blob_client(where.bucket, where.path)
        return SignedUrl(
            url=f"{blob.url}?{sas}",
            kind=self.kind,
            public=str(where),
            expires_at=expiry.timestamp(),
        )

    def _delegation_key(self, where: CloudLocation, expiry: datetime) -> Any:
        assert where.account is not None
        with self._lock:
            cached = self._delegation.get(where.account)
        if cached is not None and _parse_time(cached.signed_expiry) > expiry:
            return cached
        now = datetime.now(UTC)
        until = max(expiry, now + timedelta(seconds=DELEGATION_KEY_S))
        until = min(until, now + timedelta(seconds=MAX_TTL_S))
        try:
            fresh = self.service(where.account).get_user_delegation_key(
                now - timedelta(seconds=CLOCK_SKEW_S), until
            )
        except Exception as exc:
            raise _translate(exc, str(where), "get a user delegation key for") from exc
        with self._lock:
            self._delegation[where.account] = fresh
        return fresh

    def _stat(self, location: str) -> ObjectStat:
        where = blob_location(location)
        assert where.account is not None
        try:
            blob = self.service(where.account).get_blob_client(where.bucket, where.path)
            props = blob.get_blob_properties()
        except Exception as exc:
            raise _translate(exc, location, "read the properties of") from exc
        md5 = props.content_settings.content_md5
        return ObjectStat(
            location=str(where),
            size_bytes=int(props.size),
            generation=str(props.etag).strip('"'),
            md5=base64.b64encode(bytes(md5)).decode() if md5 else None,
        )

    def _download_to(self, location: str, path: str) -> int:
        where = blob_location(location)
        assert where.account is not None
        try:
            blob = self.service(where.account).get_blob_client(where.bucket, where.path)
            with open(path, "wb") as f:
                return int(blob.download_blob(max_concurrency=4).readinto(f))
        except Exception as exc:
            raise _translate(exc, location, "download") from exc

    def _delete_prefix(self, location: str, max_objects: int | None) -> int:
        where = blob_location(location)
        assert where.account is not None
        prefix = where.as_prefix()
        if not prefix:
            raise CloudError(f"{location}: refusing to delete a whole container; name a prefix")
        from azure.core.exceptions import ResourceNotFoundError

        container = self.service(where.account).get_container_client(where.bucket)
        deleted = 0
        try:
            for name in container.list_blob_names(name_starts_with=prefix):
                if max_objects is not None and deleted >= max_objects:
                    break
                try:
                    container.delete_blob(name)
                except ResourceNotFoundError:
                    continue  # gone since the listing (the batch's delete and a sweep at once)
                deleted += 1
        except Exception as exc:
            raise _translate(exc, location, "delete the blobs under") from exc
        return deleted

    def _list_children(self, location: str) -> list[str]:
        where = blob_location(location)
        assert where.account is not None
        prefix = where.as_prefix()
        container = self.service(where.account).get_container_client(where.bucket)
        try:
            found = [
                item.name[len(prefix) :].rstrip("/")
                for item in container.walk_blobs(name_starts_with=prefix or None, delimiter="/")
                if item.name.endswith("/")  # a BlobPrefix; blobs right under the prefix are not
            ]
        except Exception as exc:
            raise _translate(exc, location, "list the blobs under") from exc
        return sorted(found)

    def _check_scratch(self, location: str) -> ScratchCheck:
        try:
            where = blob_location(location)
        except CloudError as exc:
            return ScratchCheck(location, problems=(str(exc),))
        assert where.account is not None
        container = self.service(where.account).get_container_client(where.bucket)
        probe = where.join(_CHECK_NAME + secrets.token_hex(6)).path
        try:
            container.get_container_properties()
            container.upload_blob(probe, b"labbatch scratch check\n", overwrite=True)
            container.delete_blob(probe)
        except Exception as exc:
            return ScratchCheck(location, problems=(_why_unusable(exc, where),))
        return ScratchCheck(location)


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


def _why_unusable(exc: BaseException, where: CloudLocation) -> str:
    code = _error_code(exc)
    status = getattr(exc, "status_code", None)
    if code == "ContainerNotFound":
        return (
            f"there is no container named {where.bucket} in storage account {where.account} "
            "(create it first)"
        )
    if status in (401, 403):
        return f"you may not write blobs in {where}: {ROLE_HINT}"
    if _is_unreachable(exc):
        return f"storage account {where.account} cannot be reached (does it exist?): {exc}"
    return str(_translate(exc, str(where), "write blobs in"))


def _is_unreachable(exc: BaseException) -> bool:
    from azure.core.exceptions import ServiceRequestError

    return isinstance(exc, ServiceRequestError)


def _translate(exc: BaseException, location: str, doing: str) -> CloudError | NotFoundError:
    """Turn an azure-core failure into a CloudError naming the blob."""
    from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError

    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(f"Azure Blob: could not {doing} {location}: not found")
    if isinstance(exc, ValueError) and "HTTPS" in str(exc):
        return CloudError(
            f"Azure Blob: could not {doing} {location}: a signed-in credential needs an https "
            f"endpoint; for a plain-http emulator set {ACCOUNT_KEY_ENV} to the account key"
        )
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        # no answer from the service: DefaultAzureCredential found no sign-in to use
        return CloudError(
            f"Azure Blob: could not {doing} {location}: no usable Azure credentials; run "
            f"`az login` (or set {ACCOUNT_KEY_ENV} to the storage account's key)"
        )
    if isinstance(exc, ClientAuthenticationError) or getattr(exc, "status_code", None) in (
        401,
        403,
    ):
        return CloudError(f"Azure Blob: could not {doing} {location}: {first}; {ROLE_HINT}")
    status = getattr(exc, "status_code", None)
    transient = status is None or status == 429 or status >= 500
    return CloudError(f"Azure Blob: could not {doing} {location}: {first}", transient=transient)
