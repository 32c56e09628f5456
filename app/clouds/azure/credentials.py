"""Which credential an Azure client uses: DefaultAzureCredential, or a dummy one for loopback.

A plain-http ``base_url`` is allowed only to this machine (a local proxy, the tests' fake); there
the client gets a static dummy token and a policy letting bearer auth go over http, so real
credentials never travel unencrypted. Everything else uses DefaultAzureCredential, made by the
client on first use and never stored by LabBatch.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy

from app.clouds.azure.config import is_loopback_http

DUMMY_TOKEN = "labbatch-loopback-dummy-token"


class StaticCredential:
    """An async TokenCredential handing out a dummy token (never a real one)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """A dummy token valid for an hour."""
        return AccessToken(DUMMY_TOKEN, int(time.time()) + 3600)

    async def close(self) -> None:
        """Nothing to release."""


class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Lets bearer auth go over plain http (only used with StaticCredential on loopback)."""

    def on_request(self, request: Any) -> None:
        """Mark the request as allowed without https."""
        request.context["enforce_https"] = False


def loopback_auth(base_url: str | None) -> tuple[Any, list[Any]]:
    """(credential, per-call policies) for ``base_url``: the dummy pair for plain http to
    loopback, else (None, []) meaning DefaultAzureCredential over https."""
    if base_url is not None and is_loopback_http(base_url):
        return StaticCredential(), [AllowHttp()]
    return None, []
