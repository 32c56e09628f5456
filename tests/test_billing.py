"""Billing arithmetic: price files, attempt quantities, cost, versioned prices (no Qt, no DB)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from app.engine.billing.rates import (
    CLOUDS,
    HOURS_PER_MONTH,
    PriceError,
    Rate,
    attempt_quantities,
    cost_usd,
    format_usd,
    latest_rates,
    load_price_file,
    load_price_table,
    local_rates,
    machine_family,
    versioned_updates,
)
from app.errors import UserError

D = Decimal
GIB = 1024**3


# ---------------------------------------------------------------------------------------------
# Quantities

QUANTITY_CASES = [
    pytest.param(
        {"cloud": "local", "cores_mcpu": 500, "memory_bytes": GIB, "storage_bytes": GIB},
        {"compute/local": D("0.5"), "service-fee": D("0.5")},
        id="local-bills-cores-only",
    ),
    pytest.param(
        {"cloud": "gcp", "family_or_size": "n1", "cores_mcpu": 2000, "memory_bytes": 8 * GIB},
        {
            "compute/n1-spot/us-central1": D(2),
            "memory/n1-spot/us-central1": D(8),
            "service-fee": D(2),
        },
        id="gcp-spot-cores-and-memory",
    ),
    pytest.param(
        {"cloud": "gcp", "family_or_size": "n2", "preemptible": False, "cores_mcpu": 250},
        {"compute/n2-standard/us-central1": D("0.25"), "service-fee": D("0.25")},
        id="gcp-standard-no-memory-no-disk",
    ),
    pytest.param(
        {"cloud": "gcp", "family_or_size": "e2", "cores_mcpu": 1000, "storage_bytes": GIB // 2},
        {
            "compute/e2-spot/us-central1": D(1),
            "disk/pd-ssd/us-central1": D("0.5"),
            "service-fee": D(1),
        },
        id="gcp-storage-on-pd-ssd",
    ),
    pytest.param(
        {
            "cloud": "gcp",
            "family_or_size": "c2",
            "cores_mcpu": 4000,
            "storage_bytes": 10 * GIB,
            "boot_disk_gib": 100,
            "disk_kind": "pd-balanced",
        },
        {
            "compute/c2-spot/us-central1": D(4),
            "disk/pd-balanced/us-central1": D(10) + D(100) * 4 / 16,
            "service-fee": D(4),
        },
        id="gcp-boot-disk-share",
    ),
    pytest.param(
        {
            "cloud": "azure",
            "family_or_size": "Standard_D16s_v5",
            "region": "eastus",
            "cores_mcpu": 4000,
            "memory_bytes": 16 * GIB,
        },
        {"vm/Standard_D16s_v5-spot/eastus": D("0.25"), "service-fee": D(4)},
        id="azure-vm-share",
    ),
    pytest.param(
        {
            "cloud": "azure",
            "family_or_size": "Standard_E2s_v5",
            "region": "westeurope",
            "preemptible": False,
            "worker_cores_mcpu": 2000,
            "cores_mcpu": 2000,
            "storage_bytes": GIB,
        },
        {
            "vm/Standard_E2s_v5-standard/westeurope": D(1),
            "disk/premium-ssd/westeurope": D(1),
            "service-fee": D(2),
        },
        id="azure-whole-vm-and-disk",
    ),
]


def _quantities(**overrides: object) -> dict[str, Decimal]:
    arguments: dict[str, object] = {
        "cloud": "gcp",
        "family_or_size": "n1",
        "region": "us-central1",
        "preemptible": True,
        "worker_cores_mcpu": 16_000,
        "cores_mcpu": 1000,
        "memory_bytes": 0,
        "storage_bytes": 0,
    }
    arguments.update(overrides)
    return attempt_quantities(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(("arguments", "expected"), QUANTITY_CASES)
def test_attempt_quantities(arguments: dict[str, object], expected: dict[str, Decimal]) -> None:
    assert _quantities(**arguments) == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"cores_mcpu": 32_000}, "does not fit a worker"),
        ({"cores_mcpu": 0}, "cores must be positive"),
        ({"worker_cores_mcpu": 0}, "cores must be positive"),
        ({"memory_bytes": -1}, "must be ≥ 0"),
        ({"cloud": "aws"}, "unknown cloud 'aws'"),
    ],
)
def test_attempt_quantities_rejects(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _quantities(**arguments)


@pytest.mark.parametrize(
    ("machine_type", "family"),
    [("n2-standard-8", "n2"), ("n1-highmem-16", "n1"), ("e2", "e2"), ("c2-standard-4", "c2")],
)
def test_machine_family(machine_type: str, family: str) -> None:
    assert machine_family(machine_type) == family


# ---------------------------------------------------------------------------------------------
# Cost

COST_CASES = [
    # (quantities, rates, duration_ms, expected cost) — expected = quantity * rate * hours
    ({"compute/local": D(1)}, {"compute/local": D("0.05")}, 3_600_000, D("0.05")),
    ({"compute/local": D(2)}, {"compute/local": D("0.05")}, 90_000, D("0.0025")),
    ({"compute/local": D(2)}, {"compute/local": D(0)}, 3_600_000, D(0)),
    ({"compute/local": D("0.25")}, {"compute/local": D("0.04")}, 0, D(0)),
    (
        {"compute/n1-spot/r": D(4), "memory/n1-spot/r": D(15), "service-fee": D(4)},
        {"compute/n1-spot/r": D("0.01"), "memory/n1-spot/r": D("0.001"), "service-fee": D("0.01")},
        1_800_000,
        (D(4) * D("0.01") + D(15) * D("0.001") + D(4) * D("0.01")) / 2,
    ),
    ({}, {}, 3_600_000, D(0)),
]


@pytest.mark.parametrize(("quantities", "rates", "duration_ms", "expected"), COST_CASES)
def test_cost_usd(
    quantities: dict[str, Decimal], rates: dict[str, Decimal], duration_ms: int, expected: Decimal
) -> None:
    assert cost_usd(quantities, rates, duration_ms) == expected


@pytest.mark.parametrize("duration_ms", [1, 7, 1_000, 61_234, 3_600_000, 86_400_000])
@pytest.mark.parametrize("rate", [D("0.031611"), D("0.000892"), D("0.05")])
def test_cost_of_a_job_is_quantity_times_rate_times_duration(duration_ms: int, rate: D) -> None:
    quantity = D("1.5")
    cost = cost_usd({"compute/x": quantity}, {"compute/x": rate}, duration_ms)
    assert cost == quantity * rate * duration_ms / 3_600_000


def test_cost_of_a_quantity_without_a_rate_names_the_resource() -> None:
    with pytest.raises(ValueError, match=r"no price for 'memory/n9-spot/mars-1'"):
        cost_usd({"memory/n9-spot/mars-1": D(1)}, {}, 1000)
    with pytest.raises(UserError):  # shown to the user plainly, not as an internal error
        cost_usd({"memory/n9-spot/mars-1": D(1)}, {}, 1000)


def test_cost_rejects_a_negative_duration() -> None:
    with pytest.raises(ValueError, match="duration"):
        cost_usd({}, {}, -1)


@pytest.mark.parametrize(
    ("amount", "decimals", "shown"),
    [
        ("0", None, "$0.00"),
        ("0.42", None, "$0.42"),
        ("0.425", None, "$0.42"),  # banker's rounding, as Decimal quantizes
        ("1234.5", None, "$1,234.50"),
        ("0.0042", None, "$0.0042"),
        ("0.00001", None, "<$0.0001"),
        ("0.00001", 2, "<$0.01"),
        ("0.5", 4, "$0.5000"),
        ("-1.5", None, "-$1.50"),
    ],
)
def test_format_usd(amount: str, decimals: int | None, shown: str) -> None:
    assert format_usd(D(amount), decimals=decimals) == shown


# ---------------------------------------------------------------------------------------------
# Versioned prices

VERSION_CASES = [
    pytest.param({}, {"a": D("0.1")}, [Rate("a", 1, D("0.1"))], id="new-resource-v1"),
    pytest.param({"a": Rate("a", 3, D("0.1"))}, {"a": D("0.10")}, [], id="unchanged"),
    pytest.param(
        {"a": Rate("a", 3, D("0.1"))}, {"a": D("0.2")}, [Rate("a", 4, D("0.2"))], id="changed"
    ),
    pytest.param({"a": Rate("a", 1, D("0.1"))}, {}, [], id="dropped-keeps-its-rows"),
    pytest.param(
        {"a": Rate("a", 1, D(1)), "b": Rate("b", 2, D(2))},
        {"c": D(3), "b": D("2.5"), "a": D(1)},
        [Rate("b", 3, D("2.5")), Rate("c", 1, D(3))],
        id="mixed-sorted-by-resource",
    ),
]


@pytest.mark.parametrize(("current", "new_prices", "expected"), VERSION_CASES)
def test_versioned_updates(
    current: dict[str, Rate], new_prices: dict[str, Decimal], expected: list[Rate]
) -> None:
    assert versioned_updates(current, new_prices) == expected


def test_versioned_updates_rejects_a_negative_price() -> None:
    with pytest.raises(ValueError, match="the price of a must be"):
        versioned_updates({}, {"a": D(-1)})


def test_old_attempts_keep_their_version() -> None:
    rows = [Rate("a", 1, D("0.1"))]
    rows += versioned_updates(latest_rates(rows), {"a": D("0.2")})
    rows += versioned_updates(latest_rates(rows), {"a": D("0.2")})
    assert rows == [Rate("a", 1, D("0.1")), Rate("a", 2, D("0.2"))]
    assert latest_rates(rows) == {"a": Rate("a", 2, D("0.2"))}


# ---------------------------------------------------------------------------------------------
# Price files


@pytest.mark.parametrize("cloud", CLOUDS)
def test_price_file_loads_with_positive_prices(cloud: str) -> None:
    table = load_price_file(cloud)
    assert table.source.startswith("https://")
    assert table.as_of
    prices = load_price_table(cloud)
    assert len(prices) > 20
    assert prices["service-fee"] >= 0
    for resource, price in prices.items():
        assert isinstance(price, Decimal), resource
        if resource != "service-fee":
            assert price > 0, resource


@pytest.mark.parametrize(
    ("cloud", "resource", "usd_per_unit_hour"),
    [
        ("gcp", "compute/n1-standard/us-central1", D("0.031611")),
        ("gcp", "memory/n2d-spot/europe-west4", None),
        ("gcp", "compute/e2-spot/us-east1", None),
        ("gcp", "memory/c2-standard/europe-west1", None),
        ("gcp", "disk/pd-ssd/us-central1", D("0.17") / HOURS_PER_MONTH),
        ("azure", "vm/Standard_D2s_v5-standard/eastus", D("0.096")),
        ("azure", "vm/Standard_F16s_v2-spot/westeurope", None),
        ("azure", "vm/Standard_E8s_v5-standard/westeurope", None),
        ("azure", "disk/premium-ssd/eastus", None),
    ],
)
def test_price_file_has(cloud: str, resource: str, usd_per_unit_hour: Decimal | None) -> None:
    prices = load_price_table(cloud)
    assert resource in prices
    if usd_per_unit_hour is not None:
        assert prices[resource] == usd_per_unit_hour


@pytest.mark.parametrize("cloud", CLOUDS)
def test_spot_is_cheaper_than_standard(cloud: str) -> None:
    prices = load_price_table(cloud)
    for resource, price in prices.items():
        if "-spot/" in resource:
            assert price < prices[resource.replace("-spot/", "-standard/")], resource


def test_every_gcp_family_and_region_prices_an_attempt() -> None:
    prices = load_price_table("gcp")
    families_regions = {
        (r.split("/")[1].rsplit("-", 1)[0], r.split("/")[2])
        for r in prices
        if r.startswith("compute/")
    }
    assert len(families_regions) == 5 * 4
    for family, region in families_regions:
        for preemptible in (True, False):
            quantities = _quantities(
                family_or_size=family,
                region=region,
                preemptible=preemptible,
                memory_bytes=4 * GIB,
                storage_bytes=GIB,
            )
            assert cost_usd(quantities, prices, 3_600_000) > 0


def test_every_azure_size_prices_an_attempt() -> None:
    prices = load_price_table("azure")
    for resource in [r for r in prices if r.startswith("vm/")]:
        size_tier, region = resource.split("/")[1:]
        size, tier = size_tier.rsplit("-", 1)
        quantities = _quantities(
            cloud="azure",
            family_or_size=size,
            region=region,
            preemptible=tier == "spot",
            worker_cores_mcpu=2000,
            storage_bytes=GIB,
        )
        assert cost_usd(quantities, prices, 3_600_000) > 0


def test_unknown_cloud_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"no price table for cloud 'aws'.*gcp, azure"):
        load_price_table("aws")


def _write(directory: Path, data: object, cloud: str = "gcp") -> Path:
    (directory / f"{cloud}.json").write_text(json.dumps(data), encoding="utf-8")
    return directory


GOOD = {
    "cloud": "gcp",
    "source": "https://example.com",
    "as_of": "2024-06-01",
    "service_fee_usd_per_core_hour": 0.01,
    "regions": {
        "r1": {
            "compute_usd_per_core_hour": {"n1": {"standard": 0.03, "spot": 0.01}},
            "disk_usd_per_gib_month": {"pd-ssd": 0.73},
        }
    },
}


def test_price_file_from_a_directory(tmp_path: Path) -> None:
    prices = load_price_table("gcp", _write(tmp_path, GOOD))
    assert prices == {
        "service-fee": D("0.01"),
        "compute/n1-standard/r1": D("0.03"),
        "compute/n1-spot/r1": D("0.01"),
        "disk/pd-ssd/r1": D("0.001"),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cloud": "azure"}, "says cloud 'azure'"),
        ({"service_fee_usd_per_core_hour": -1}, "service-fee must be ≥ 0"),
        ({"regions": {"r1": {"gpu_usd_per_hour": {}}}}, "unknown section 'gpu_usd_per_hour'"),
        (
            {"regions": {"r1": {"vm_usd_per_hour": {"D2": {"standard": 0.1}}}}},
            "needs exactly",
        ),
        (
            {"regions": {"r1": {"disk_usd_per_gib_month": {"pd-ssd": 0}}}},
            "disk/pd-ssd/r1 must be positive",
        ),
        (
            {"regions": {"r1": {"disk_usd_per_gib_month": {"pd-ssd": "cheap"}}}},
            "malformed",
        ),
        ({"source": None} | {"regions": None}, "malformed"),
    ],
)
def test_malformed_price_file(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(PriceError, match=message):
        load_price_table("gcp", _write(tmp_path, GOOD | change))


def test_missing_and_invalid_price_files(tmp_path: Path) -> None:
    with pytest.raises(PriceError, match=r"cannot read the price table .*gcp\.json"):
        load_price_table("gcp", tmp_path)
    (tmp_path / "gcp.json").write_text("{", encoding="utf-8")
    with pytest.raises(PriceError, match="not valid JSON"):
        load_price_table("gcp", tmp_path)


# ---------------------------------------------------------------------------------------------
# Local pool


@pytest.mark.parametrize(
    ("price", "fee", "expected"),
    [
        (None, D(0), {"compute/local": D(0), "service-fee": D(0)}),
        (D("0.05"), D(0), {"compute/local": D("0.05"), "service-fee": D(0)}),
        (D("0.05"), D("0.01"), {"compute/local": D("0.05"), "service-fee": D("0.01")}),
    ],
)
def test_local_rates(price: Decimal | None, fee: Decimal, expected: dict[str, Decimal]) -> None:
    assert local_rates(price, service_fee_usd_per_core_hour=fee) == expected


def test_local_rates_reject_a_negative_price() -> None:
    with pytest.raises(PriceError, match="compute/local"):
        local_rates(D("-0.01"))


def test_local_attempt_cost() -> None:
    quantities = _quantities(cloud="local", cores_mcpu=2000)
    rates = local_rates(D("0.05"), service_fee_usd_per_core_hour=D("0.01"))
    assert cost_usd(quantities, rates, 1_800_000) == D(2) * (D("0.05") + D("0.01")) / 2
