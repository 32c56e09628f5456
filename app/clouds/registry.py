"""The cloud drivers by name, loaded on first use.

The engine asks for a cloud by its pool's ``cloud`` field and never imports a cloud package
itself: the SDKs stay out of the engine (an import contract checks it), and a laptop with only
local pools never pays for importing google-cloud-compute or the Azure SDK.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any, cast

from app.clouds.base import CloudDriver, CreatedInstance, InstanceRequest, LostCallback

CLOUD_KINDS = ("gcp", "azure")
PoolConfigReader = Callable[[str], Mapping[str, Any]]


def _package(kind: str) -> Any:
    if kind not in CLOUD_KINDS:
        raise ValueError(f"unknown cloud {kind!r}; one of {', '.join(CLOUD_KINDS)}")
    return importlib.import_module(f"app.clouds.{kind}")


def check_config(kind: str, pool: str, config: Mapping[str, Any]) -> None:
    """Refuse a cloud pool's settings that cannot work (CloudError naming pool and key)."""
    _package(kind).check_config(pool, config)


def config_keys(kind: str) -> tuple[str, ...]:
    """The settings a pool of this cloud accepts in its ``config``."""
    return tuple(_package(kind).CONFIG_KEYS)


def make_cloud(kind: str, pool_config: PoolConfigReader) -> CloudDriver:
    """The driver of ``kind``; it reads each pool's stored settings through ``pool_config``."""
    return cast(CloudDriver, _package(kind).make_cloud(pool_config))


async def offers(kind: str, pool: str, config: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(name, cores, memory MB) of the machine types (Azure: VM sizes) the pool's zones or
    location offer; CloudError when the cloud cannot be asked."""
    found = await _package(kind).offers(pool, config)
    return cast(list[tuple[str, int, int]], found)


class LazyCloud:
    """A cloud driver that imports and builds its implementation on first use.

    The driver keeps one per cloud from the start (it cannot know which pools will be
    created), but a lab that never makes a GCE pool never loads the Compute Engine SDK.
    """

    def __init__(self, kind: str, pool_config: PoolConfigReader) -> None:
        if kind not in CLOUD_KINDS:  # fail now, not at the first create
            raise ValueError(f"unknown cloud {kind!r}; one of {', '.join(CLOUD_KINDS)}")
        self.kind = kind
        self._pool_config = pool_config
        self._cloud: CloudDriver | None = None
        self._lost: LostCallback | None = None

    @property
    def cloud(self) -> CloudDriver:
        """The implementation, built now if it was not (its SDK loads at first use)."""
        if self._cloud is None:
            self._cloud = make_cloud(self.kind, self._pool_config)
            if self._lost is not None:
                self._cloud.on_lost(self._lost)
        return self._cloud

    async def _loaded(self) -> CloudDriver:
        """The implementation, its package and SDK imported in a thread the first time: an
        import on the event loop would freeze the desktop for up to a second."""
        if self._cloud is None:
            package = await asyncio.to_thread(_package, self.kind)
            await asyncio.to_thread(package.import_sdk)
        return self.cloud

    def on_lost(self, callback: LostCallback) -> None:
        self._lost = callback
        if self._cloud is not None:
            self._cloud.on_lost(callback)

    async def create_instance(self, request: InstanceRequest) -> CreatedInstance:
        return await (await self._loaded()).create_instance(request)

    async def adopt_instance(self, name: str, handle: dict[str, Any]) -> bool:
        return await (await self._loaded()).adopt_instance(name, handle)

    async def delete_instance(self, name: str, *, handle: dict[str, Any] | None = None) -> None:
        if self._cloud is None and not handle:
            return  # nothing was created or adopted through an unloaded one
        await (await self._loaded()).delete_instance(name, handle=handle)

    async def boot_log(self, name: str) -> str:
        return await self._cloud.boot_log(name) if self._cloud is not None else ""

    async def delete_orphans(self, pool: str, known_names: Collection[str]) -> list[str]:
        """Delete the pool's VMs that the database does not know (left by a crash)."""
        return await (await self._loaded()).delete_orphans(pool, known_names)

    async def release(self) -> None:
        if self._cloud is not None:
            await self._cloud.release()

    async def close(self) -> None:
        if self._cloud is not None:
            await self._cloud.close()
