"""Billing arithmetic: price tables, what an attempt uses, what it costs, versioned prices.

Pure functions over plain data; the only I/O is reading the price files in resources/prices.
Money is Decimal throughout and quantized only for display (`format_usd`).

Resource names (the unit of each quantity in brackets; every rate is USD per unit-hour):
  compute/<family>-<spot|standard>/<region>   [cores]      GCP
  memory/<family>-<spot|standard>/<region>    [GiB]        GCP
  vm/<size>-<spot|standard>/<region>          [VM share]   Azure, priced per VM-hour
  disk/<kind>/<region>                        [GiB]        both clouds
  compute/local                               [cores]      the local pool
  service-fee                                 [cores]      LabBatch's own fee, 0 by default
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from app.errors import ConfigError

CLOUDS = ("gcp", "azure")
DEFAULT_PRICES_DIR = Path(__file__).parents[3] / "resources" / "prices"
HOURS_PER_MONTH = Decimal(730)  # GCP and Azure both prorate monthly prices over 730 hours
MS_PER_HOUR = 3_600_000
GIB_BYTES = 1024**3
DEFAULT_DISK_KIND = {"gcp": "pd-ssd", "azure": "premium-ssd"}
SERVICE_FEE = "service-fee"
LOCAL_COMPUTE = "compute/local"
_TIERS = ("standard", "spot")
_SECTIONS = {  # section of a region in a price file -> (resource prefix, divisor to per hour)
    "compute_usd_per_core_hour": ("compute", Decimal(1)),
    "memory_usd_per_gib_hour": ("memory", Decimal(1)),
    "vm_usd_per_hour": ("vm", Decimal(1)),
    "disk_usd_per_gib_month": ("disk", HOURS_PER_MONTH),
}


class PriceError(ConfigError, ValueError):
    """A price table that is missing, malformed or lacks a price that is needed."""


@dataclass(frozen=True, slots=True)
class Rate:
    """One version of the price of a billed resource."""

    resource: str
    version: int
    usd_per_unit_hour: Decimal


@dataclass(frozen=True, slots=True)
class PriceTable:
    """A cloud's price file: where the figures come from, and USD per unit-hour by resource."""

    cloud: str
    source: str
    as_of: str
    note: str
    usd_per_unit_hour: Mapping[str, Decimal]


# ---------------------------------------------------------------------------------------------
# Price tables


def load_price_table(cloud: str, directory: Path | None = None) -> dict[str, Decimal]:
    """Read resources/prices/<cloud>.json as resource -> USD per unit-hour."""
    return dict(load_price_file(cloud, directory).usd_per_unit_hour)


def load_price_file(cloud: str, directory: Path | None = None) -> PriceTable:
    """Read resources/prices/<cloud>.json with its source and date."""
    if cloud not in CLOUDS:
        raise PriceError(
            f"no price table for cloud {cloud!r}: use one of {', '.join(CLOUDS)} "
            "(the local pool's price is a pool setting)"
        )
    path = (directory or DEFAULT_PRICES_DIR) / f"{cloud}.json"
    try:
        with path.open(encoding="utf-8") as file:
            data = json.load(file, parse_float=Decimal, parse_int=Decimal)
    except OSError as exc:
        raise PriceError(f"cannot read the price table {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise PriceError(f"the price table {path} is not valid JSON: {exc}") from exc
    try:
        return _parse_price_file(cloud, data)
    except (AttributeError, KeyError, TypeError, ValueError, InvalidOperation) as exc:
        raise PriceError(f"the price table {path} is malformed: {exc}") from exc


def _parse_price_file(cloud: str, data: Any) -> PriceTable:
    if data.get("cloud") != cloud:
        raise ValueError(f"it says cloud {data.get('cloud')!r}, expected {cloud!r}")
    prices = {SERVICE_FEE: _price(data["service_fee_usd_per_core_hour"], SERVICE_FEE)}
    for region, sections in data["regions"].items():
        for section, entries in sections.items():
            if section not in _SECTIONS:
                raise ValueError(f"unknown section {section!r} in region {region!r}")
            prefix, divisor = _SECTIONS[section]
            for name, value in entries.items():
                if prefix == "disk":
                    resource = f"disk/{name}/{region}"
                    prices[resource] = _price(value, resource, positive=True) / divisor
                    continue
                if set(value) != set(_TIERS):
                    raise ValueError(f"{prefix} {name!r} in {region!r} needs exactly {_TIERS}")
                for tier in _TIERS:
                    resource = f"{prefix}/{name}-{tier}/{region}"
                    prices[resource] = _price(value[tier], resource, positive=True) / divisor
    return PriceTable(
        cloud=cloud,
        source=str(data["source"]),
        as_of=str(data["as_of"]),
        note=str(data.get("note", "")),
        usd_per_unit_hour=prices,
    )


def _price(value: object, resource: str, *, positive: bool = False) -> Decimal:
    if isinstance(value, str):
        value = Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise PriceError(f"the price of {resource} must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise PriceError(f"the price of {resource} must be {'positive' if positive else '≥ 0'}")
    return value


def local_rates(
    price_per_core_hour_usd: Decimal | None,
    *,
    service_fee_usd_per_core_hour: Decimal = Decimal(0),
) -> dict[str, Decimal]:
    """The rates of the local pool: its price per core-hour (None: free) and the service fee."""
    # str(): a float from a settings file becomes the decimal its user wrote, not its binary value
    compute = Decimal(str(price_per_core_hour_usd or 0))
    for name, value in ((LOCAL_COMPUTE, compute), (SERVICE_FEE, service_fee_usd_per_core_hour)):
        if not value.is_finite() or value < 0:
            raise PriceError(f"the price of {name} must be a number ≥ 0, got {value}")
    return {LOCAL_COMPUTE: compute, SERVICE_FEE: Decimal(service_fee_usd_per_core_hour)}


def machine_family(machine_type: str) -> str:
    """The GCP family of a machine type: 'n2-standard-8' -> 'n2'."""
    return machine_type.split("-", 1)[0]


# ---------------------------------------------------------------------------------------------
# Quantities and cost


def attempt_quantities(
    *,
    cloud: str,
    family_or_size: str,
    region: str,
    preemptible: bool,
    worker_cores_mcpu: int,
    cores_mcpu: int,
    memory_bytes: int,
    storage_bytes: int,
    disk_kind: str | None = None,
    boot_disk_gib: int = 0,
) -> dict[str, Decimal]:
    """What one attempt of a job uses, per resource, for every hour it runs.

    GCP bills the job's cores and memory; Azure bills the job's share of the VM
    (cores_mcpu / worker_cores_mcpu), since it prices whole VMs. Both bill the job's storage
    plus its share of the worker's boot disk. Zero quantities are left out.
    """
    if cores_mcpu <= 0 or worker_cores_mcpu <= 0:
        raise ValueError(f"cores must be positive, got {cores_mcpu} of {worker_cores_mcpu} mcpu")
    if cores_mcpu > worker_cores_mcpu:
        raise ValueError(
            f"a job of {cores_mcpu} mcpu does not fit a worker of {worker_cores_mcpu} mcpu"
        )
    if memory_bytes < 0 or storage_bytes < 0 or boot_disk_gib < 0:
        raise ValueError("memory, storage and boot disk sizes must be ≥ 0")
    cores = Decimal(cores_mcpu) / 1000
    if cloud == "local":
        return {LOCAL_COMPUTE: cores, SERVICE_FEE: cores}
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r}: use local, {', '.join(CLOUDS)}")
    tier = "spot" if preemptible else "standard"
    share = Decimal(cores_mcpu) / Decimal(worker_cores_mcpu)
    quantities: dict[str, Decimal] = {}
    if cloud == "gcp":
        quantities[f"compute/{family_or_size}-{tier}/{region}"] = cores
        if memory_bytes:
            quantities[f"memory/{family_or_size}-{tier}/{region}"] = (
                Decimal(memory_bytes) / GIB_BYTES
            )
    else:
        quantities[f"vm/{family_or_size}-{tier}/{region}"] = share
    disk_gib = Decimal(storage_bytes) / GIB_BYTES + boot_disk_gib * share
    if disk_gib:
        quantities[f"disk/{disk_kind or DEFAULT_DISK_KIND[cloud]}/{region}"] = disk_gib
    quantities[SERVICE_FEE] = cores
    return quantities


def hourly_cost_usd(quantities: Mapping[str, Decimal], rates: Mapping[str, Decimal]) -> Decimal:
    """USD per hour of running: Σ quantity * rate; PriceError names a quantity without a rate."""
    total = Decimal(0)
    for resource, quantity in quantities.items():
        rate = rates.get(resource)
        if rate is None:
            raise PriceError(
                f"no price for {resource!r}: add it to the price table "
                "(resources/prices) or choose a machine type and region it lists"
            )
        total += quantity * rate
    return total


def cost_usd(
    quantities: Mapping[str, Decimal], rates: Mapping[str, Decimal], duration_ms: int
) -> Decimal:
    """The cost of using these quantities for duration_ms: Σ quantity * rate * hours."""
    if duration_ms < 0:
        raise ValueError(f"a duration must be ≥ 0, got {duration_ms} ms")
    # One division at the end: the products are exact, so the cost is exact when it can be.
    return hourly_cost_usd(quantities, rates) * duration_ms / MS_PER_HOUR


def format_usd(amount_usd: Decimal, *, decimals: int | None = None) -> str:
    """Show money: '$1,234.50'; by default with cents from one cent up and four decimals below
    ('$0.0042'), and '<$0.0001' for less."""
    if amount_usd < 0:
        return "-" + format_usd(-amount_usd, decimals=decimals)
    if decimals is None:
        decimals = 2 if amount_usd == 0 or amount_usd >= Decimal("0.01") else 4
    shown = amount_usd.quantize(Decimal(1).scaleb(-decimals))
    if amount_usd and not shown:
        return f"<${Decimal(1).scaleb(-decimals)}"
    return f"${shown:,}"


# ---------------------------------------------------------------------------------------------
# Versioned prices


def versioned_updates(current: Mapping[str, Rate], new_prices: Mapping[str, Decimal]) -> list[Rate]:
    """The Rate rows to insert for new prices: a changed price adds version + 1, a new resource
    version 1, an unchanged one nothing. Old attempts keep the versions they were billed at."""
    updates = []
    for resource in sorted(new_prices):
        price = _price(new_prices[resource], resource)
        rate = current.get(resource)
        if rate is None:
            updates.append(Rate(resource, 1, price))
        elif rate.usd_per_unit_hour != price:
            updates.append(Rate(resource, rate.version + 1, price))
    return updates


def latest_rates(rows: Iterable[Rate]) -> dict[str, Rate]:
    """The newest version of each resource among rows."""
    latest: dict[str, Rate] = {}
    for row in rows:
        known = latest.get(row.resource)
        if known is None or row.version > known.version:
            latest[row.resource] = row
    return latest
