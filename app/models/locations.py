"""Cloud storage locations: parse and check ``gs://`` and Azure Blob URLs, without any SDK.

Accepted forms (what batch inputs, batch output destinations and scratch settings may name):
- ``gs://<bucket>/<object path>``
- ``https://<account>.blob.core.windows.net/<container>/<blob path>``
- ``az://<account>/<container>/<blob path>`` and ``hail-az://<account>/<container>/<path>``
  (the forms Hail users write)

Anything else (a relative or absolute path, ``file://``) is a local location: ``parse_cloud``
answers None for it. A malformed cloud location raises ``LocationError`` naming what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit


class StorageKind(StrEnum):
    """Which object store a location lives in."""

    GCS = "gcs"
    AZURE = "azure"


class LocationError(ValueError):
    """A location that names a cloud but is malformed; the message says what to fix."""


AZURE_HOST_SUFFIX = ".blob.core.windows.net"
_CLOUD_SCHEMES = ("gs", "az", "hail-az", "https", "http", "s3")
# https://cloud.google.com/storage/docs/buckets#naming
_GCS_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{1,220})[a-z0-9]$")
# https://learn.microsoft.com/azure/storage/common/storage-account-overview#storage-account-name
_AZURE_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
# https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata
_AZURE_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
MAX_OBJECT_NAME_BYTES = 1024


@dataclass(frozen=True, slots=True)
class CloudLocation:
    """One object (or a prefix) in a bucket or container.

    ``bucket`` is the GCS bucket or the Azure container; ``path`` the object or blob name
    ("" for the bucket's root); ``account`` the Azure storage account (None for GCS).
    """

    kind: StorageKind
    bucket: str
    path: str = ""
    account: str | None = None

    def __str__(self) -> str:
        if self.kind is StorageKind.GCS:
            return f"gs://{self.bucket}/{self.path}"
        return f"https://{self.account}{AZURE_HOST_SUFFIX}/{self.bucket}/{self.path}"

    @property
    def url_path(self) -> str:
        """``/<bucket>/<path>`` percent-encoded, as an HTTP request names the object."""
        return f"/{self.bucket}/{quote(self.path, safe='/')}"

    def join(self, *parts: str) -> CloudLocation:
        """The location of ``parts`` below this one (a prefix): ``scratch.join("7", "out")``."""
        tail = "/".join(p.strip("/") for p in parts if p.strip("/"))
        base = self.path.rstrip("/")
        path = f"{base}/{tail}" if base and tail else base or tail
        _check_object_name(path, str(self))
        return CloudLocation(self.kind, self.bucket, path, self.account)

    def as_prefix(self) -> str:
        """The path as a listing prefix: "" or ending in one slash."""
        return self.path.rstrip("/") + "/" if self.path.strip("/") else ""


def is_cloud(text: str) -> bool:
    """Whether ``text`` names a location in a cloud (well formed or not)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in _CLOUD_SCHEMES


def parse_cloud(text: str) -> CloudLocation | None:
    """The cloud location ``text`` names; None for a local path or ``file://`` URL.

    Raises LocationError for a malformed cloud location or a scheme LabBatch cannot read.
    """
    if not is_cloud(text):
        return None
    scheme = text.partition("://")[0].lower()
    if scheme == "s3":
        raise LocationError(f"{text}: Amazon S3 is not supported (use gs:// or Azure Blob)")
    if scheme == "gs":
        return _parse_gcs(text)
    if scheme in ("az", "hail-az"):
        account, _, rest = text.partition("://")[2].partition("/")
        return _parse_azure(text, account, rest)
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    if parts.query or parts.fragment:
        raise LocationError(
            f"{text}: a location has no query string (give the plain blob URL, not a SAS URL)"
        )
    if scheme != "https" or not host.endswith(AZURE_HOST_SUFFIX):
        raise LocationError(
            f"{text}: an https location must be an Azure Blob URL "
            f"https://<account>{AZURE_HOST_SUFFIX}/<container>/<path>"
        )
    account = host.removesuffix(AZURE_HOST_SUFFIX)
    return _parse_azure(text, account, unquote(parts.path.lstrip("/")))


def _parse_gcs(text: str) -> CloudLocation:
    bucket, _, path = text[len("gs://") :].partition("/")
    if not bucket:
        raise LocationError(f"{text}: no bucket name (gs://<bucket>/<path>)")
    if not _GCS_BUCKET.match(bucket) or ".." in bucket:
        raise LocationError(
            f"{text}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, "
            "dashes, underscores and dots, starting and ending with a letter or digit)"
        )
    _check_object_name(path, text)
    return CloudLocation(StorageKind.GCS, bucket, path)


def _parse_azure(text: str, account: str, rest: str) -> CloudLocation:
    container, _, path = rest.partition("/")
    if not _AZURE_ACCOUNT.match(account):
        raise LocationError(
            f"{text}: {account!r} is not a valid storage account name (3-24 lowercase "
            "letters and digits)"
        )
    if not container:
        raise LocationError(f"{text}: no container name (…/<account>/<container>/<path>)")
    if not _AZURE_CONTAINER.match(container):
        raise LocationError(
            f"{text}: {container!r} is not a valid container name (3-63 lowercase letters, "
            "digits and single dashes, starting and ending with a letter or digit)"
        )
    _check_object_name(path, text)
    return CloudLocation(StorageKind.AZURE, container, path, account)


def _check_object_name(path: str, text: str) -> None:
    if len(path.encode()) > MAX_OBJECT_NAME_BYTES:
        raise LocationError(f"{text}: the object name is longer than 1024 bytes")
    if any(c in path for c in "\r\n\x00"):
        raise LocationError(f"{text}: the object name contains a line break or NUL")
    if any(part in (".", "..") for part in path.split("/")):
        raise LocationError(f"{text}: the object name contains a '.' or '..' segment")
