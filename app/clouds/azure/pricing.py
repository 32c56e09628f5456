"""Azure VM list prices from the public Azure Retail Prices API (no credentials needed).

``GET https://prices.azure.com/api/retail/prices?api-version=…&$filter=…`` answers
``{Items: [...], NextPageLink}``. We ask, region by region, for the pay-as-you-go
("Consumption") hourly prices of the VM sizes wanted, keep Linux rows (the Windows ones carry
the licence) and drop Low Priority ones, and name them as billing does:
``vm/<size>-<standard|spot>/<region>`` (USD per VM-hour).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

from app.clouds.pricing import (
    MAX_PAGES,
    FetchedPrices,
    fetched,
    get_json,
    new_session,
    same_origin,
    wanted_resources,
)
from app.errors import CloudError

DEFAULT_BASE_URL = "https://prices.azure.com/api/retail/prices"
API_VERSION = "2023-01-01-preview"
WHAT = "the Azure Retail Prices API"
HINT = "check the VM sizes and regions of your Azure pools (names as the Azure API spells them)"
# sizes and regions go into an OData filter: only plain names, never quotes or operators
_NAME = re.compile(r"^[A-Za-z0-9_]+$")


async def fetch_prices(
    *,
    names: Collection[str],
    regions: Collection[str],
    endpoint: str | None = None,
) -> FetchedPrices:
    """The hourly prices of these VM sizes (``Standard_D4s_v5``) in these regions (``eastus``)."""
    base = endpoint or DEFAULT_BASE_URL
    sizes = sorted({n for n in names if _NAME.match(n)})
    wanted = wanted_resources(("vm",), names, regions)
    found: dict[str, tuple[str, Decimal]] = {}  # resource -> (effective date, price)
    async with new_session() as session:
        for region in sorted({r for r in regions if _NAME.match(r)}):
            if sizes:
                for item in await _region_items(session, base, region, sizes):
                    priced = item_price(item, sizes=sizes, regions=(region,))
                    if priced is None:
                        continue
                    resource, price = priced
                    since = str(item.get("effectiveStartDate") or "")
                    if resource not in found or since > found[resource][0]:
                        found[resource] = (since, price)
    prices = {resource: price for resource, (_since, price) in found.items()}
    return fetched("azure", base, prices, wanted)


def region_filter(region: str, sizes: Collection[str]) -> str:
    """The OData filter for the Linux and Windows, standard and spot hourly rows of the
    sizes in one region (Windows and Low Priority rows are dropped when read)."""
    any_size = " or ".join(f"armSkuName eq '{size}'" for size in sorted(sizes))
    return (
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' "
        f"and armRegionName eq '{region}' and ({any_size})"
    )


async def _region_items(
    session: Any, base: str, region: str, sizes: Collection[str]
) -> list[Mapping[str, Any]]:
    items: list[Mapping[str, Any]] = []
    url = base
    params: dict[str, str] | None = {
        "api-version": API_VERSION,
        "$filter": region_filter(region, sizes),
    }
    seen = {url}
    for _page in range(MAX_PAGES):
        page = await get_json(session, url, params=params, what=WHAT, hint=HINT)
        items.extend(i for i in _list(page.get("Items")) if isinstance(i, Mapping))
        next_link = page.get("NextPageLink")
        if not next_link:
            return items
        next_link = str(next_link)
        if not same_origin(next_link, base):
            raise CloudError(f"{WHAT} sent a next page link to another host ({next_link})")
        if next_link in seen:
            raise CloudError(f"{WHAT} repeated a next page link; try again later")
        seen.add(next_link)
        url, params = next_link, None  # the link carries its own query
    raise CloudError(f"{WHAT} returned more than {MAX_PAGES} pages for {region}")


def item_price(
    item: Mapping[str, Any], *, sizes: Collection[str], regions: Collection[str]
) -> tuple[str, Decimal] | None:
    """(resource, USD per VM-hour) of one price row, or None when it is not the Linux
    pay-as-you-go or spot hourly price of a wanted size and region."""
    sku_name = str(item.get("skuName", ""))
    meter_name = str(item.get("meterName", ""))
    if (
        item.get("type") != "Consumption"
        or item.get("unitOfMeasure") != "1 Hour"
        or item.get("currencyCode", "USD") != "USD"
        or "Windows" in str(item.get("productName", ""))
        or "Low Priority" in sku_name
        or "Low Priority" in meter_name
    ):
        return None
    size, region = str(item.get("armSkuName", "")), str(item.get("armRegionName", ""))
    if size not in sizes or region not in regions:
        return None
    try:
        price = Decimal(str(item.get("retailPrice")))
    except ArithmeticError:
        return None
    if not price.is_finite() or price <= 0:
        return None
    tier = "spot" if "Spot" in sku_name or "Spot" in meter_name else "standard"
    return f"vm/{size}-{tier}/{region}", price


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
