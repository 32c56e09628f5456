"""Compute Engine list prices from the Cloud Billing Catalog API.

``GET {endpoint}/v1/services/6F81-5844-456A/skus?currencyCode=USD&pageToken=…`` lists every
Compute Engine SKU (a few thousand, in pages). We keep the on-demand and spot per-core and
per-GiB prices of predefined machine families ("N2 Instance Core running in Americas",
"Spot Preemptible N2 Instance Ram running in Americas", …) and name them as billing does:
``compute/<family>-<tier>/<region>`` (USD per core-hour) and ``memory/<family>-<tier>/<region>``
(USD per GiB-hour). The API needs Application Default Credentials; the token is fetched for
the request and never stored or logged.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

from app.clouds.pricing import (
    MAX_PAGES,
    FetchedPrices,
    fetched,
    get_json,
    is_loopback_http,
    new_session,
    wanted_resources,
)
from app.errors import CloudError

DEFAULT_ENDPOINT = "https://cloudbilling.googleapis.com"
COMPUTE_SERVICE = "6F81-5844-456A"  # the Compute Engine service in the catalogue
SCOPE = "https://www.googleapis.com/auth/cloud-billing.readonly"
PAGE_SIZE = "5000"
WHAT = "the Cloud Billing Catalog API"
HINT = (
    "run `gcloud auth application-default login`, and enable the Cloud Billing API "
    "(cloudbilling.googleapis.com) in the project of your credentials"
)
TIER_OF_USAGE = {"OnDemand": "standard", "Preemptible": "spot"}
UNIT_OF_KIND = {"Core": ("compute", "h"), "Ram": ("memory", "GiBy.h")}
# How the catalogue names the predefined machines of a family, where it is not "<N2> Instance"
# or "<N2D> AMD Instance"; custom, sole-tenant and extended-memory SKUs match none of these.
FAMILY_OF_NAME = {
    "N1 Predefined Instance": "n1",
    "Compute optimized": "c2",
}
_DESCRIPTION = re.compile(
    r"^(?P<spot>Spot )?(?:Preemptible )?(?P<name>.+?) (?P<kind>Core|Ram) running in .+$"
)
_GENERIC_NAME = re.compile(r"^(?P<family>[A-Z]\d+[A-Z]?)(?: AMD| Arm)? Instance$")


async def fetch_prices(
    *,
    names: Collection[str],
    regions: Collection[str],
    endpoint: str | None = None,
) -> FetchedPrices:
    """The per-core and per-GiB prices of these machine families (``n2``) in these regions."""
    base = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
    headers = await _auth_headers(base)
    url = f"{base}/v1/services/{COMPUTE_SERVICE}/skus"
    wanted = wanted_resources(("compute", "memory"), names, regions)
    found: dict[str, tuple[int, Decimal]] = {}  # resource -> (rank, price); lower rank wins
    token = ""
    seen_tokens: set[str] = set()
    async with new_session() as session:
        for _page in range(MAX_PAGES):
            params = {"currencyCode": "USD", "pageSize": PAGE_SIZE}
            if token:
                params["pageToken"] = token
            page = await get_json(
                session, url, params=params, headers=headers, what=WHAT, hint=HINT
            )
            for sku in _list(page.get("skus")):
                for resource, rank, price in sku_prices(sku, names=names, regions=regions):
                    if resource not in found or rank < found[resource][0]:
                        found[resource] = (rank, price)
            token = str(page.get("nextPageToken") or "")
            if not token:
                break
            if token in seen_tokens:
                raise CloudError(f"{WHAT} repeated a page token; try again later")
            seen_tokens.add(token)
        else:
            raise CloudError(f"{WHAT} returned more than {MAX_PAGES} pages; try again later")
    prices = {resource: price for resource, (_rank, price) in found.items()}
    return fetched("gcp", url, prices, wanted)


def sku_prices(
    sku: Mapping[str, Any], *, names: Collection[str], regions: Collection[str]
) -> list[tuple[str, int, Decimal]]:
    """(resource, rank, USD per unit-hour) for each wanted region of one SKU, or [] when it is
    not the per-core or per-GiB price of a wanted family. "Spot Preemptible …" ranks before a
    plain "Preemptible …" SKU of the same machines."""
    category = sku.get("category") or {}
    tier = TIER_OF_USAGE.get(str(category.get("usageType", "")))
    if category.get("resourceFamily") != "Compute" or tier is None:
        return []
    match = _DESCRIPTION.match(str(sku.get("description", "")))
    if match is None:
        return []
    family = family_of(match["name"])
    if family is None or family not in names:
        return []
    if tier == "standard" and "Preemptible" in match[0]:
        return []  # an on-demand SKU describing preemptible machines: not ours to guess
    prefix, unit = UNIT_OF_KIND[match["kind"]]
    price = _unit_price(sku, unit)
    if price is None:
        return []
    rank = 0 if match["spot"] or tier == "standard" else 1
    skus_regions = [r for r in _list(sku.get("serviceRegions")) if r in regions]
    return [(f"{prefix}/{family}-{tier}/{region}", rank, price) for region in skus_regions]


def family_of(name: str) -> str | None:
    """The machine family of a catalogue name: 'N2D AMD Instance' -> 'n2d'."""
    if name in FAMILY_OF_NAME:
        return FAMILY_OF_NAME[name]
    match = _GENERIC_NAME.match(name)
    return match["family"].lower() if match else None


def _unit_price(sku: Mapping[str, Any], unit: str) -> Decimal | None:
    """The newest list price of a SKU in ``unit`` (the first positive tier: a free tier, if
    any, comes first), or None when it is priced in another unit or not at all."""
    infos = _list(sku.get("pricingInfo"))
    if not infos:
        return None
    expression = infos[-1].get("pricingExpression") or {}  # the timeline's newest entry
    if expression.get("usageUnit") != unit:
        return None
    tiers = sorted(
        _list(expression.get("tieredRates")),
        key=lambda t: Decimal(str(t.get("startUsageAmount") or 0)),
    )
    for tier in tiers:
        money = tier.get("unitPrice") or {}
        if money.get("currencyCode", "USD") != "USD":
            return None
        price = Decimal(str(money.get("units") or 0)) + Decimal(
            int(money.get("nanos") or 0)
        ).scaleb(-9)
        if price > 0:
            return price
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


async def _auth_headers(base: str) -> dict[str, str]:
    if is_loopback_http(base):
        return {}  # a test server on this machine: no credentials leave for it
    if not base.startswith("https://"):
        raise CloudError(f"the pricing endpoint {base} must use https (credentials are sent)")
    return await asyncio.to_thread(_adc_headers)


def _adc_headers() -> dict[str, str]:
    """Authorization (and quota project) headers from Application Default Credentials."""
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests

    try:
        credentials, _project = google.auth.default(scopes=[SCOPE])
        credentials.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise CloudError(f"no Google Cloud credentials were found; {HINT}") from exc
    except google.auth.exceptions.GoogleAuthError as exc:
        raise CloudError(
            f"the Google Cloud credentials could not be used ({type(exc).__name__}); {HINT}"
        ) from exc
    headers: dict[str, str] = {}
    credentials.apply(headers)
    return headers
