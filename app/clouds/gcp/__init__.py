"""Google Compute Engine: the resource manager (the SDK is imported lazily inside it).

The engine reaches this package through importlib only: ``check_config`` when a pool is
created or changed, ``make_cloud`` when the pool's driver starts, ``CONFIG_KEYS`` for the CLI
and the GUI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from app.clouds.gcp.config import CONFIG_KEYS, PoolSettings, check_config, pool_settings
from app.clouds.gcp.driver import GceCloud
from app.clouds.gcp.resources import DEFAULT_IMAGE, GceResources, VmInfo, VmSpec


def make_cloud(pool_config: Callable[[str], Mapping[str, Any]]) -> GceCloud:
    """The Compute Engine driver; ``pool_config(name)`` returns a pool's stored config
    (KeyError for an unknown pool) and is called on every create, so changes take effect."""
    return GceCloud(pool_config)


__all__ = [
    "CONFIG_KEYS",
    "DEFAULT_IMAGE",
    "GceCloud",
    "GceResources",
    "PoolSettings",
    "VmInfo",
    "VmSpec",
    "check_config",
    "make_cloud",
    "pool_settings",
]
