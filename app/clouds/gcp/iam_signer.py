"""Sign bytes as a service account through the IAM Credentials API (signBlob).

For users whose own credentials hold no private key: the signature is made by Google for a
service account the user may impersonate (roles/iam.serviceAccountTokenCreator on it), so no
key file ever exists. Each call is one HTTPS request made with the user's own credentials.
"""

from __future__ import annotations

import base64
from typing import Any

from google.auth import credentials as ga_credentials
from google.auth import crypt

from app.errors import CloudError


class _BlobSigner(crypt.Signer):  # type: ignore[misc]
    """A google.auth Signer whose ``sign`` calls signBlob."""

    def __init__(self, owner: IamSigner) -> None:
        self._owner = owner

    @property
    def key_id(self) -> str | None:
        return None

    def sign(self, message: bytes | str) -> bytes:
        data = message.encode() if isinstance(message, str) else message
        return self._owner.sign_bytes(data)


class IamSigner(ga_credentials.Signing):  # type: ignore[misc]
    """Signing credentials of ``service_account``, signing with the source credentials' rights."""

    def __init__(self, source: Any, service_account: str, *, endpoint: str) -> None:
        self._source = source
        self._account = service_account
        self._url = (
            f"{endpoint.rstrip('/')}/v1/projects/-/serviceAccounts/{service_account}:signBlob"
        )
        self._signer = _BlobSigner(self)

    @property
    def signer_email(self) -> str:
        """The service account whose signature the URLs carry."""
        return self._account

    @property
    def signer(self) -> crypt.Signer:
        """A Signer that signs through signBlob."""
        return self._signer

    def sign_bytes(self, message: bytes) -> bytes:
        """The service account's RSA-SHA256 signature of ``message``."""
        from google.auth.transport.requests import AuthorizedSession

        body = {"payload": base64.b64encode(message).decode()}
        with AuthorizedSession(self._source) as session:
            response = session.post(self._url, json=body, timeout=30)
        if response.status_code != 200:
            hint = (
                f" (give your account roles/iam.serviceAccountTokenCreator on {self._account})"
                if response.status_code in (401, 403)
                else ""
            )
            raise CloudError(
                f"could not sign as {self._account}: IAM signBlob answered "
                f"{response.status_code}{hint}",
                transient=response.status_code == 429 or response.status_code >= 500,
            )
        return base64.b64decode(response.json()["signedBlob"])
