"""What the clouds' price catalogues share: the result of a fetch and reading JSON pages.

Each cloud's ``pricing`` module (``app.clouds.gcp.pricing``, ``app.clouds.azure.pricing``)
offers ``fetch_prices(names=…, regions=…, endpoint=…)`` returning ``FetchedPrices``, in the
resource names of ``app.engine.billing.rates``. The engine loads them through importlib.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from app.errors import CloudError

TIERS = ("standard", "spot")
REQUEST_TIMEOUT_S = 60.0
MAX_PAGES = 500  # a catalogue that pages on and on (or repeats a token) is a broken one
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_read_json = partial(json.loads, parse_float=Decimal)  # prices are exact decimals, never floats


@dataclass(frozen=True, slots=True)
class FetchedPrices:
    """Prices read from a cloud's catalogue: resource -> USD per unit-hour, and what was
    asked for but not found there (those keep the price file's figures)."""

    cloud: str
    source: str
    usd_per_unit_hour: Mapping[str, Decimal]
    missing: tuple[str, ...]


def wanted_resources(
    prefixes: Iterable[str], names: Iterable[str], regions: Iterable[str]
) -> list[str]:
    """Every '<prefix>/<name>-<tier>/<region>' asked for, sorted."""
    regions = sorted(set(regions))
    return sorted(
        f"{prefix}/{name}-{tier}/{region}"
        for prefix in prefixes
        for name in set(names)
        for tier in TIERS
        for region in regions
    )


def fetched(
    cloud: str, source: str, found: Mapping[str, Decimal], wanted: Iterable[str]
) -> FetchedPrices:
    """The FetchedPrices of what was found among what was wanted."""
    wanted = list(wanted)
    return FetchedPrices(
        cloud=cloud,
        source=source,
        usd_per_unit_hour={r: found[r] for r in wanted if r in found},
        missing=tuple(r for r in wanted if r not in found),
    )


def is_loopback_http(url: str) -> bool:
    """Whether a URL is plain HTTP on this machine (a test server: it gets no credentials)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS


def same_origin(url: str, base: str) -> bool:
    """Whether ``url`` is on the scheme, host and port of ``base`` (a next-page link must be)."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))


async def get_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    what: str,
    hint: str,
) -> dict[str, Any]:
    """GET one JSON object; any failure becomes a CloudError naming ``what`` with ``hint``.

    The message never carries the request's headers (they may hold a token)."""
    try:
        async with session.get(url, params=params, headers=headers) as response:
            body = await response.text()
            status = response.status
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        detail = str(exc) or type(exc).__name__
        raise CloudError(
            f"{what} could not be reached ({detail}); check the network and try again",
            transient=True,
        ) from exc
    if status >= 400:
        transient = status == 429 or status >= 500
        reason = _error_message(body) or f"HTTP {status}"
        advice = "try again later" if transient else hint
        raise CloudError(
            f"{what} refused the request (HTTP {status}: {reason}); {advice}", transient=transient
        )
    try:
        data = _read_json(body)
    except ValueError as exc:
        raise CloudError(f"{what} answered with something that is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CloudError(f"{what} answered with JSON that is not an object")
    return data


def _error_message(body: str) -> str:
    """The message of a JSON error body ({"error": {"message": …}}), else its start."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:200]
    error = (data.get("error") or data.get("Error")) if isinstance(data, dict) else None
    if isinstance(error, dict):  # Google says "message", Azure "Message"
        message = error.get("message") or error.get("Message")
        if message:
            return str(message)[:300]
    if isinstance(error, str):
        return error[:300]
    return body.strip()[:200]
