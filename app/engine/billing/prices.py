"""List prices from the clouds' catalogues: refresh them, and show where each price comes from.

A cloud pool is billed at its cloud's price file (resources/prices), overridden by the prices
last read from the cloud's catalogue (the ``cloud_prices`` table). A refresh asks the catalogue
for the machine families or VM sizes and regions of that cloud's pools, stores what it found
and adds a price version for each price that changed (``costs.sync_rates``); attempts billed
before keep the version they started with. What the catalogue did not return keeps the file's
figure. The cloud's pricing module is loaded by name, as the drivers are (app/clouds/registry).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from app.clouds.pricing import FetchedPrices
from app.engine.billing import costs
from app.engine.billing import rates as billing
from app.engine.marker import bump_marker
from app.engine.workers.pools import PoolConfig, read_pools
from app.errors import ConfigError
from app.models.db import Database
from app.models.tables import CloudPrice

CATALOGUE = "catalogue"
FILE = "file"


@dataclass(frozen=True, slots=True)
class PriceChange:
    """A price that a refresh changed (old None: a resource priced for the first time)."""

    resource: str
    old_usd_per_unit_hour: Decimal | None
    new_usd_per_unit_hour: Decimal
    version: int


@dataclass(frozen=True, slots=True)
class RefreshReport:
    """What one refresh of a cloud's prices read and changed."""

    cloud: str
    source: str
    n_fetched: int
    changes: tuple[PriceChange, ...]
    missing: tuple[str, ...]  # used by a pool but not in the catalogue: the file's price stays
    unpriced_pools: tuple[str, ...]  # pools without a machine type or region: nothing to ask


@dataclass(frozen=True, slots=True)
class PriceRow:
    """One price as billing uses it, where it comes from and its stored version."""

    resource: str
    cloud: str
    usd_per_unit_hour: Decimal
    source: str  # CATALOGUE or FILE
    as_of: str  # when the catalogue was read, or the file's date
    version: int | None  # the stored version at this price; None until a pool bills it


@dataclass(frozen=True, slots=True)
class PriceRequest:
    """What to ask a cloud's catalogue for, from its pools."""

    names: frozenset[str]  # GCP machine families ("n2"), Azure VM sizes ("Standard_D4s_v5")
    regions: frozenset[str]
    needed: frozenset[str]  # the compute, memory or VM resources the pools bill
    unpriced_pools: tuple[str, ...]


def price_request(pools: Iterable[PoolConfig], cloud: str) -> PriceRequest:
    """The families or sizes and regions of a cloud's pools, and the resources they bill."""
    names: set[str] = set()
    regions: set[str] = set()
    needed: set[str] = set()
    unpriced = []
    prefixes = ("compute", "memory") if cloud == "gcp" else ("vm",)
    for pool in pools:
        if pool.cloud != cloud:
            continue
        if not pool.machine_type or not pool.regions:
            unpriced.append(pool.name)
            continue
        name = billing.machine_family(pool.machine_type)
        names.add(name)
        regions.update(pool.regions)
        needed.update(
            f"{prefix}/{name}-{tier}/{region}"
            for prefix in prefixes
            for tier in ("standard", "spot")
            for region in pool.regions
        )
    return PriceRequest(frozenset(names), frozenset(regions), frozenset(needed), tuple(unpriced))


def clouds_with_pools(pools: Iterable[PoolConfig]) -> list[str]:
    """The clouds (gcp, azure) some pool runs on."""
    return sorted({p.cloud for p in pools if p.cloud in billing.CLOUDS})


async def refresh_prices(db: Database, cloud: str, *, endpoint: str | None = None) -> RefreshReport:
    """Read the list prices of a cloud's pools from its catalogue and store the changed ones
    as new price versions. Raises CloudError (nothing stored) when the catalogue cannot be read."""
    pricing = _pricing_module(cloud)
    pools = [p for p in (await db.run(read_pools)).values() if p.cloud == cloud]
    if not pools:
        raise ConfigError(
            f"there are no {cloud} pools, so no prices to refresh; their prices come from "
            f"resources/prices/{cloud}.json until one is created"
        )
    request = price_request(pools, cloud)
    if not request.names:
        return RefreshReport(cloud, "", 0, (), (), request.unpriced_pools)
    result = cast(
        FetchedPrices,
        await pricing.fetch_prices(names=request.names, regions=request.regions, endpoint=endpoint),
    )
    changes = await db.run(lambda conn: _store(conn, result, pools))
    return RefreshReport(
        cloud=cloud,
        source=result.source,
        n_fetched=len(result.usd_per_unit_hour),
        changes=tuple(changes),
        missing=tuple(r for r in result.missing if r in request.needed),
        unpriced_pools=request.unpriced_pools,
    )


def _pricing_module(cloud: str) -> Any:
    if cloud not in billing.CLOUDS:
        raise ConfigError(f"no price catalogue for cloud {cloud!r}: use one of gcp, azure")
    return importlib.import_module(f"app.clouds.{cloud}.pricing")


def _store(conn: Connection, result: FetchedPrices, pools: list[PoolConfig]) -> list[PriceChange]:
    """Replace the catalogue prices read, then version what changed (one transaction)."""
    now = time.time()
    prices = result.usd_per_unit_hour
    if prices:
        conn.execute(delete(CloudPrice).where(CloudPrice.resource.in_(list(prices))))
        conn.execute(
            insert(CloudPrice),
            [
                {
                    "resource": resource,
                    "cloud": result.cloud,
                    "usd_per_unit_hour": usd.quantize(costs.RATE_QUANTUM),
                    "source": result.source[:500],
                    "time_fetched": now,
                }
                for resource, usd in sorted(prices.items())
            ],
        )
    before = costs.stored_rates(conn)
    after = costs.sync_rates(conn, pools)
    changes = [
        PriceChange(
            resource,
            before[resource].usd_per_unit_hour if resource in before else None,
            rate.usd_per_unit_hour,
            rate.version,
        )
        for resource, rate in sorted(after.items())
        if resource not in before or before[resource].version != rate.version
    ]
    if changes:
        bump_marker(conn)  # a running driver loads the new versions for the next attempts
    return changes


async def show_prices(db: Database, cloud: str | None = None) -> list[PriceRow]:
    """Every price of one cloud (or both) as billing uses it, with its source."""
    clouds = [cloud] if cloud else list(billing.CLOUDS)
    for name in clouds:
        if name not in billing.CLOUDS:
            raise ConfigError(f"no prices for cloud {name!r}: use one of gcp, azure")
    files = {name: billing.load_price_file(name) for name in clouds}
    return await db.read(lambda conn: _price_rows(conn, files))


def _price_rows(conn: Connection, files: dict[str, billing.PriceTable]) -> list[PriceRow]:
    stored = costs.stored_rates(conn)
    read = {
        row.resource: row
        for row in conn.execute(select(*CloudPrice.__table__.c))
        if row.cloud in files
    }
    rows = []
    for cloud, table in files.items():
        names = set(table.usd_per_unit_hour) | {r for r, row in read.items() if row.cloud == cloud}
        for resource in sorted(names):
            if resource in read:
                usd = Decimal(str(read[resource].usd_per_unit_hour))
                source, as_of = CATALOGUE, _date(read[resource].time_fetched)
            else:
                usd, source, as_of = table.usd_per_unit_hour[resource], FILE, table.as_of
            rate = stored.get(resource)
            same = rate is not None and rate.usd_per_unit_hour == usd.quantize(costs.RATE_QUANTUM)
            rows.append(
                PriceRow(
                    resource, cloud, usd, source, as_of, rate.version if same and rate else None
                )
            )
    return rows


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
