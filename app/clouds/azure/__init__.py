"""Azure VMs (azure-mgmt-compute, azure-identity); the SDK is imported only when first used.

The engine reaches this package through importlib only: ``check_config``, ``make_cloud``,
``CONFIG_KEYS`` and ``offers``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.clouds.azure.config import CONFIG_KEYS, AzurePoolSettings, check_config, parse_config
from app.clouds.azure.driver import AzureCloud, default_resources
from app.clouds.azure.resources import AzureResources, ImageRef, VmInfo, VmSpec


def import_sdk() -> None:
    """Import the Azure SDK (a few hundred ms): the engine calls this in a thread, so that the
    desktop's window keeps painting while it loads."""
    import azure.core.rest
    import azure.identity.aio
    import azure.mgmt.compute.aio  # noqa: F401


def make_cloud(pool_config: Callable[[str], Mapping[str, Any]]) -> AzureCloud:
    """The Azure CloudDriver; ``pool_config(pool)`` gives a pool's stored configuration."""
    return AzureCloud(pool_config)


async def offers(pool: str, config: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(name, cores, memory MB) of every VM size in the pool's location, sorted by name;
    credentials as the driver finds them."""
    resources = default_resources(parse_config(pool, config))
    try:
        return await resources.vm_sizes()
    finally:
        await resources.close()


__all__ = [
    "CONFIG_KEYS",
    "AzureCloud",
    "AzurePoolSettings",
    "AzureResources",
    "ImageRef",
    "VmInfo",
    "VmSpec",
    "check_config",
    "default_resources",
    "make_cloud",
    "offers",
    "parse_config",
]
