"""Refreshing list prices from fake GCP and Azure pricing APIs on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import insert, select

from app.clouds.azure import pricing as azure_pricing
from app.clouds.gcp import pricing as gcp_pricing
from app.engine.batches import frontend
from app.engine.billing import costs, prices
from app.engine.workers.pools import list_pools
from app.errors import CloudError
from app.models.db import Database, open_database
from app.models.tables import Attempt, AttemptResource, CloudPrice, Pool, Resource
from tests.engine_helpers import USER, dag

GIB = 1024**3
SKUS_PATH = "/v1/services/6F81-5844-456A/skus"
AZURE_PATH = "/api/retail/prices"


# ---------------------------------------------------------------------------------------------
# Fake catalogues


def sku(
    description: str,
    price: str,
    *,
    usage: str = "OnDemand",
    unit: str = "h",
    regions: tuple[str, ...] = ("us-central1", "us-east1"),
    group: str = "CPU",
) -> dict[str, Any]:
    """A Compute Engine SKU as the Cloud Billing Catalog API lists it."""
    units, _, fraction = price.partition(".")
    nanos = int((fraction + "000000000")[:9])
    return {
        "name": f"services/6F81-5844-456A/skus/{abs(hash(description + usage)):X}",
        "description": description,
        "category": {
            "serviceDisplayName": "Compute Engine",
            "resourceFamily": "Compute",
            "resourceGroup": group,
            "usageType": usage,
        },
        "serviceRegions": list(regions),
        "pricingInfo": [
            {
                "pricingExpression": {
                    "usageUnit": unit,
                    "baseUnit": "s",
                    "tieredRates": [
                        {
                            "startUsageAmount": 0,
                            "unitPrice": {"currencyCode": "USD", "units": units, "nanos": nanos},
                        }
                    ],
                }
            }
        ],
    }


def gcp_skus(n2_spot_core: str = "0.00765") -> list[dict[str, Any]]:
    return [
        sku("N2 Instance Core running in Americas", "0.031611"),
        sku(
            "Spot Preemptible N2 Instance Core running in Americas",
            n2_spot_core,
            usage="Preemptible",
        ),
        sku("N2 Instance Ram running in Americas", "0.004237", unit="GiBy.h", group="RAM"),
        sku(
            "Spot Preemptible N2 Instance Ram running in Americas",
            "0.001025",
            usage="Preemptible",
            unit="GiBy.h",
            group="RAM",
        ),
        # what must not be taken for the n2 prices
        sku("N2 Custom Instance Core running in Americas", "0.5"),
        sku("N2 Sole Tenancy Instance Core running in Americas", "0.5"),
        sku("Commitment v1: N2 Cpu in Americas for 1 Year", "0.01", usage="Commit1Yr"),
        sku("N2 Instance Core running in Americas", "0.02", usage="Commit1Yr"),
        sku("N2 Instance Core running in Netherlands", "0.0348", regions=("europe-west4",)),
        sku("E2 Instance Core running in Americas", "0.021811"),
    ]


@dataclass
class FakeCatalogue:
    """A fake pricing API: its address, the requests it saw, what it answers."""

    url: str
    requests: list[Any] = field(default_factory=list)
    skus: list[dict[str, Any]] = field(default_factory=gcp_skus)
    items: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 3
    fail_status: int | None = None


@pytest.fixture
async def catalogue() -> AsyncIterator[FakeCatalogue]:
    """Both APIs on one 127.0.0.1 server, paging ``page_size`` rows at a time."""
    state = FakeCatalogue(url="")

    async def refuse() -> web.Response:
        assert state.fail_status is not None
        message = "Cloud Billing API has not been used in project 42 or it is disabled."
        return web.json_response(
            {"error": {"code": state.fail_status, "message": message}}, status=state.fail_status
        )

    async def gcp(request: web.Request) -> web.Response:
        state.requests.append(request)
        if state.fail_status:
            return await refuse()
        assert request.query["currencyCode"] == "USD"
        start = int(request.query.get("pageToken") or 0)
        end = start + state.page_size
        token = str(end) if end < len(state.skus) else ""
        return web.json_response({"skus": state.skus[start:end], "nextPageToken": token})

    async def azure(request: web.Request) -> web.Response:
        state.requests.append(request)
        if state.fail_status:
            return await refuse()
        assert request.query["api-version"] == "2023-01-01-preview"
        query = request.query["$filter"]
        region = re.search(r"armRegionName eq '(\w+)'", query)
        sizes = set(re.findall(r"armSkuName eq '(\w+)'", query))
        assert region and sizes, query
        rows = [
            i for i in state.items if i["armRegionName"] == region[1] and i["armSkuName"] in sizes
        ]
        skip = int(request.query.get("$skip") or 0)
        end = skip + state.page_size
        link = None
        if end < len(rows):
            link = str(request.url.update_query({"$skip": str(end)}))
        return web.json_response(
            {"BillingCurrency": "USD", "Items": rows[skip:end], "NextPageLink": link}
        )

    app = web.Application()
    app.router.add_get(SKUS_PATH, gcp)
    app.router.add_get(AZURE_PATH, azure)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    try:
        yield state
    finally:
        await server.close()


def vm_item(size: str, region: str, price: str, **changes: str) -> dict[str, Any]:
    """An Azure Retail Prices row: Linux pay-as-you-go unless ``changes`` say otherwise."""
    short = size.removeprefix("Standard_").replace("_", " ")
    row = {
        "currencyCode": "USD",
        "retailPrice": float(price),  # a JSON number, as the API sends it
        "unitPrice": float(price),
        "armRegionName": region,
        "location": region,
        "effectiveStartDate": "2024-01-01T00:00:00Z",
        "meterName": short,
        "productName": "Virtual Machines DSv5 Series",
        "skuName": short,
        "serviceName": "Virtual Machines",
        "armSkuName": size,
        "type": "Consumption",
        "unitOfMeasure": "1 Hour",
        "isPrimaryMeterRegion": True,
    }
    row.update(changes)
    return row


def azure_items(d4_spot: str = "0.0384") -> list[dict[str, Any]]:
    d4, region = "Standard_D4s_v5", "westeurope"
    return [
        vm_item(d4, region, "0.23"),
        vm_item(d4, region, d4_spot, skuName="D4s v5 Spot", meterName="D4s v5 Spot"),
        vm_item(d4, region, "0.414", productName="Virtual Machines DSv5 Series Windows"),
        vm_item(
            d4, region, "0.046", skuName="D4s v5 Low Priority", meterName="D4s v5 Low Priority"
        ),
        vm_item(d4, region, "0.1", type="DevTestConsumption"),
        vm_item(d4, region, "1000", type="Reservation", unitOfMeasure="1 Year"),
        vm_item("Standard_E4s_v5", region, "0.288"),
        vm_item(d4, "eastus", "0.192"),
    ]


# ---------------------------------------------------------------------------------------------
# Mapping


def test_gcp_skus_map_to_compute_and_memory_by_family_tier_and_region() -> None:
    found = {}
    for s in gcp_skus():
        for resource, _rank, price in gcp_pricing.sku_prices(
            s, names={"n2", "e2"}, regions={"us-central1", "europe-west4"}
        ):
            assert resource not in found, resource
            found[resource] = price
    assert found == {
        "compute/n2-standard/us-central1": Decimal("0.031611"),
        "compute/n2-spot/us-central1": Decimal("0.00765"),
        "memory/n2-standard/us-central1": Decimal("0.004237"),
        "memory/n2-spot/us-central1": Decimal("0.001025"),
        "compute/n2-standard/europe-west4": Decimal("0.0348"),
        "compute/e2-standard/us-central1": Decimal("0.021811"),
    }


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("N1 Predefined Instance", "n1"),
        ("N2 Instance", "n2"),
        ("N2D AMD Instance", "n2d"),
        ("E2 Instance", "e2"),
        ("Compute optimized", "c2"),
        ("C2D AMD Instance", "c2d"),
        ("N2 Custom Instance", None),
        ("N2 Sole Tenancy Instance", None),
        ("N1 Predefined Custom Extended Instance", None),
    ],
)
def test_gcp_family_names(name: str, family: str | None) -> None:
    assert gcp_pricing.family_of(name) == family


def test_a_gcp_sku_in_another_unit_is_not_guessed() -> None:
    core_in_gib = sku("N2 Instance Core running in Americas", "0.03", unit="GiBy.h")
    assert gcp_pricing.sku_prices(core_in_gib, names={"n2"}, regions={"us-central1"}) == []


def test_azure_rows_map_to_linux_standard_and_spot_vm_prices() -> None:
    found = {}
    for item in azure_items():
        priced = azure_pricing.item_price(item, sizes={"Standard_D4s_v5"}, regions={"westeurope"})
        if priced is not None:
            assert priced[0] not in found, priced
            found[priced[0]] = priced[1]
    assert found == {
        "vm/Standard_D4s_v5-standard/westeurope": Decimal("0.23"),
        "vm/Standard_D4s_v5-spot/westeurope": Decimal("0.0384"),
    }


# ---------------------------------------------------------------------------------------------
# Fetching


async def test_gcp_fetch_reads_every_page_without_credentials_on_loopback(
    catalogue: FakeCatalogue,
) -> None:
    result = await gcp_pricing.fetch_prices(
        names={"n2"}, regions={"us-central1", "europe-west1"}, endpoint=catalogue.url
    )
    assert result.usd_per_unit_hour == {
        "compute/n2-standard/us-central1": Decimal("0.031611"),
        "compute/n2-spot/us-central1": Decimal("0.00765"),
        "memory/n2-standard/us-central1": Decimal("0.004237"),
        "memory/n2-spot/us-central1": Decimal("0.001025"),
    }
    assert set(result.missing) == {
        f"{kind}/n2-{tier}/europe-west1"
        for kind in ("compute", "memory")
        for tier in ("standard", "spot")
    }
    pages = [r.query.get("pageToken") for r in catalogue.requests]
    assert pages == [None, "3", "6", "9"]  # 10 SKUs, 3 a page
    assert all("Authorization" not in r.headers for r in catalogue.requests)


async def test_azure_fetch_follows_next_page_links(catalogue: FakeCatalogue) -> None:
    catalogue.items = azure_items()
    catalogue.page_size = 2
    result = await azure_pricing.fetch_prices(
        names={"Standard_D4s_v5", "Standard_E4s_v5"},
        regions={"westeurope"},
        endpoint=catalogue.url + AZURE_PATH,
    )
    assert result.usd_per_unit_hour == {
        "vm/Standard_D4s_v5-standard/westeurope": Decimal("0.23"),
        "vm/Standard_D4s_v5-spot/westeurope": Decimal("0.0384"),
        "vm/Standard_E4s_v5-standard/westeurope": Decimal("0.288"),
    }
    assert result.missing == ("vm/Standard_E4s_v5-spot/westeurope",)
    assert len(catalogue.requests) == 4  # 7 rows for westeurope, 2 a page


async def test_gcp_refusal_and_missing_credentials_are_cloud_errors(
    catalogue: FakeCatalogue, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    catalogue.fail_status = 403
    with pytest.raises(CloudError, match=r"HTTP 403: Cloud Billing API has not been used") as e:
        await gcp_pricing.fetch_prices(names={"n2"}, regions={"us-east1"}, endpoint=catalogue.url)
    assert "gcloud auth application-default login" in str(e.value)
    assert not e.value.transient

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    with pytest.raises(CloudError, match=r"no Google Cloud credentials.*application-default login"):
        await gcp_pricing.fetch_prices(names={"n2"}, regions={"us-east1"})
    with pytest.raises(CloudError, match="must use https"):
        await gcp_pricing.fetch_prices(
            names={"n2"}, regions={"us-east1"}, endpoint="http://example.com"
        )


# ---------------------------------------------------------------------------------------------
# Refreshing the database's prices


async def add_pool(db: Database, name: str, cloud: str, machine_type: str, region: str) -> None:
    row = {
        "name": name,
        "cloud": cloud,
        "worker_cores_mcpu": 4000,
        "machine_type": machine_type,
        "preemptible": True,
        "regions": [region],
        "config": {},
    }
    await db.run(lambda conn: conn.execute(insert(Pool).values(**row)))


async def bill_one_hour(db: Database, batch_id: int, attempt: int) -> dict[str, int]:
    """Record a one-hour attempt of job 1 on the gcp pool at the current rates, as the driver
    does; return the versions it was billed at."""
    pool = next(p for p in await list_pools(db) if p.cloud == "gcp")
    quantities = costs.pool_quantities(
        pool, cores_mcpu=1000, memory_bytes=4 * GIB, storage_bytes=0, preemptible=True
    )

    def record(conn: Any) -> None:
        rates = costs.sync_rates(conn, [pool])
        start = 1_000_000.0 + attempt * 10_000
        conn.execute(
            insert(Attempt).values(
                batch_id=batch_id,
                job_id=1,
                attempt=attempt,
                instance_name="w",
                time_scheduled=start,
                start_time=start,
                end_time=start + 3600,
            )
        )
        costs.record_quantities(conn, [(batch_id, 1, attempt, quantities)], rates)

    await db.run(record)
    rows = await db.read(
        lambda conn: conn.execute(
            select(AttemptResource.resource, AttemptResource.version).where(
                AttemptResource.attempt == attempt
            )
        ).all()
    )
    return dict(rows)  # type: ignore[arg-type]


async def test_a_changed_price_is_version_2_and_old_attempts_keep_version_1(
    db_url: str, catalogue: FakeCatalogue
) -> None:
    db = await open_database(db_url)
    try:
        await add_pool(db, "gce", "gcp", "n2-standard-4", "us-central1")
        batch = await frontend.submit_batch(
            db, dag("version: 1\njobs: [{name: a, command: 'true'}]\n"), user=USER
        )
        first = await bill_one_hour(db, batch, 1)
        assert first["compute/n2-spot/us-central1"] == 1
        cost_before = (await db.read(lambda c: costs.costs_by(c, "batch")))[batch]

        catalogue.skus = gcp_skus(n2_spot_core="0.0081")
        report = await prices.refresh_prices(db, "gcp", endpoint=catalogue.url)
        assert report.changes == (
            prices.PriceChange(
                "compute/n2-spot/us-central1", Decimal("0.00765"), Decimal("0.0081"), 2
            ),
        )
        assert report.n_fetched == 4 and report.missing == ()

        # the first attempt keeps its price; a new one is billed at the new version
        assert (await db.read(lambda c: costs.costs_by(c, "batch")))[batch] == cost_before
        second = await bill_one_hour(db, batch, 2)
        assert second["compute/n2-spot/us-central1"] == 2
        assert second["memory/n2-spot/us-central1"] == 1
        costs_now = await db.read(lambda c: costs.costs_by(c, "batch"))
        second_cost = Decimal("0.0081") + 4 * Decimal("0.001025")  # one core, 4 GiB, one hour
        assert abs(costs_now[batch] - cost_before - second_cost) <= Decimal("1e-8")

        # the driver's next sync keeps the catalogue's price; the same prices change nothing
        pools = await list_pools(db)
        latest = await db.run(lambda c: costs.sync_rates(c, pools))
        assert latest["compute/n2-spot/us-central1"].usd_per_unit_hour == Decimal("0.0081")
        again = await prices.refresh_prices(db, "gcp", endpoint=catalogue.url)
        assert again.changes == () and again.n_fetched == 4
        assert await db.read(latest_compute_versions) == {1: "0.00765", 2: "0.0081"}
    finally:
        await db.close()


def latest_compute_versions(conn: Any) -> dict[int, str]:
    rows = conn.execute(
        select(Resource.version, Resource.usd_per_unit_hour).where(
            Resource.name == "compute/n2-spot/us-central1"
        )
    )
    return {version: str(Decimal(str(usd)).normalize()) for version, usd in rows}


# ---------------------------------------------------------------------------------------------
# The command line


async def labbatch(*args: str) -> tuple[int, str, str]:
    """Run `labbatch ARGS` as a user does; the fake catalogue keeps serving meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ.copy(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def stored(db_url: str, setup: Callable[[Database], Any] | None = None) -> Any:
    db = await open_database(db_url)
    try:
        if setup is not None:
            await setup(db)

        def read(conn: Any) -> tuple[list[Any], list[Any]]:
            versions = conn.execute(
                select(Resource.name, Resource.version, Resource.usd_per_unit_hour)
            )
            return sorted(versions.all()), conn.execute(select(CloudPrice.resource)).all()

        return await db.read(read)
    finally:
        await db.close()


async def gcp_pool_billed(db: Database) -> None:
    await add_pool(db, "gce", "gcp", "n2-standard-4", "us-central1")
    pools = await list_pools(db)
    await db.run(lambda conn: costs.sync_rates(conn, pools))


async def test_a_refused_refresh_changes_nothing_and_says_what_to_do(
    catalogue: FakeCatalogue, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    before = await stored(url, gcp_pool_billed)
    catalogue.fail_status = 403
    for endpoint in (catalogue.url, "http://127.0.0.1:1"):  # refused; nobody listening
        code, out, err = await labbatch(
            "prices", "refresh", "--cloud", "gcp", "--endpoint", endpoint, "--db", url
        )
        assert code != 0 and out == ""
        assert err.startswith("labbatch: ") and "Traceback" not in err, err
        assert "Cloud Billing Catalog API" in err
    assert "HTTP 403" in err or "could not be reached" in err
    assert await stored(url) == before
    _, _, refused = await labbatch(
        "prices", "refresh", "--cloud", "gcp", "--endpoint", catalogue.url, "--db", url
    )
    assert "gcloud auth application-default login" in refused
    assert "enable the Cloud Billing API" in refused


async def test_cli_refresh_then_show(catalogue: FakeCatalogue, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.db'}"

    async def azure_pool_billed(db: Database) -> None:
        await add_pool(db, "az", "azure", "Standard_D4s_v5", "westeurope")
        pools = await list_pools(db)
        await db.run(lambda conn: costs.sync_rates(conn, pools))

    await stored(url, azure_pool_billed)
    catalogue.items = azure_items(d4_spot="0.05")
    code, out, err = await labbatch(
        "prices",
        "refresh",
        "--cloud",
        "azure",
        "--endpoint",
        catalogue.url + AZURE_PATH,
        "--db",
        url,
    )
    assert code == 0, err
    assert "azure: 2 prices read from" in out
    assert "vm/Standard_D4s_v5-spot/westeurope: $0.046 → $0.05 (version 2)" in out

    code, out, err = await labbatch("prices", "show", "--cloud", "azure", "--db", url)
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert re.search(
        r"\$0\.05/h\s+catalogue \d{4}-\d\d-\d\d .* v2$", lines["vm/Standard_D4s_v5-spot/westeurope"]
    )
    assert re.search(r"file 2024-06-01\s+v1$", lines["vm/Standard_D4s_v5-standard/eastus"])
    assert not any(name.startswith(("compute/", "memory/")) for name in lines)

    code, out, err = await labbatch("prices", "show", "--cloud", "azure", "--json", "--db", url)
    assert code == 0, err
    shown = {row["resource"]: row for row in json.loads(out)}
    assert shown["vm/Standard_D4s_v5-spot/westeurope"]["usd_per_unit_hour"].startswith("0.05")
    assert shown["vm/Standard_D4s_v5-spot/westeurope"]["source"] == "catalogue"
