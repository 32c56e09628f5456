"""Google Compute Engine: the resource manager (the SDK is imported lazily inside it).

The engine reaches this package through importlib only: ``check_config`` when a pool is
created or changed, ``make_cloud`` when the pool's driver starts, ``CONFIG_KEYS`` for the CLI
and the GUI, ``offers`` for `labbatch pool offers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.clouds.gcp.config import CONFIG_KEYS, PoolSettings, check_config, pool_settings
from app.clouds.gcp.driver import GceCloud, default_resources
from app.clouds.gcp.resources import DEFAULT_IMAGE, GceResources, MachineType, VmInfo, VmSpec


def import_sdk() -> None:
    """Import the Compute Engine SDK (about a second): the engine calls this in a thread, so
    that the desktop's window keeps painting while it loads."""
    from google.cloud import compute_v1  # noqa: F401


def make_cloud(pool_config: Callable[[str], Mapping[str, Any]]) -> GceCloud:
    """The Compute Engine driver; ``pool_config(name)`` returns a pool's stored config
    (KeyError for an unknown pool) and is called on every create, so changes take effect."""
    return GceCloud(pool_config)


async def offers(pool: str, config: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(name, cores, memory MB) of every machine type offered in at least one of the pool's
    zones, sorted by name; credentials as the driver finds them."""
    settings = pool_settings(pool, config)
    resources = default_resources(config)
    try:
        found: dict[str, MachineType] = {}
        for zone in settings.zones:
            for machine_type in await resources.machine_types(zone):
                found.setdefault(machine_type.name, machine_type)
    finally:
        resources.close()
    return [(m.name, m.cores, m.memory_mb) for m in sorted(found.values(), key=lambda m: m.name)]


__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_IMAGE",
    "GceCloud",
    "GceResources",
    "MachineType",
    "PoolSettings",
    "VmInfo",
    "VmSpec",
    "check_config",
    "make_cloud",
    "offers",
    "pool_settings",
]
