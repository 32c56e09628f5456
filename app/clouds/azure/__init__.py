"""Azure VMs (azure-mgmt-compute, azure-identity); the SDK is imported only when first used.

The engine reaches this package through importlib only: ``check_config``, ``make_cloud`` and
``CONFIG_KEYS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.clouds.azure.config import CONFIG_KEYS, AzurePoolSettings, check_config, parse_config
from app.clouds.azure.driver import AzureCloud, default_resources
from app.clouds.azure.resources import AzureResources, ImageRef, VmInfo, VmSpec


def make_cloud(pool_config: Callable[[str], Mapping[str, Any]]) -> AzureCloud:
    """The Azure CloudDriver; ``pool_config(pool)`` gives a pool's stored configuration."""
    return AzureCloud(pool_config)


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
    "parse_config",
]
