"""Azure VMs behind the CloudDriver interface: create with size fallback, watch for eviction.

Pool configuration keys (the pool's stored ``config`` dict):

- ``subscription_id``, ``resource_group``, ``location``: where the VMs live (required).
- ``vm_size``: e.g. ``Standard_D4s_v3`` (required unless the request names a machine type).
- ``fallback_vm_sizes``: optional list of sizes tried in order when Azure answers ``vm_size``
  with a transient error (quota, no capacity). Azure pools have one location, so this list
  stands in for the zone fallback of GCE pools. Pick sizes with the same cores and memory
  (e.g. ``Standard_D4s_v5``, ``Standard_D4as_v5``): the engine counts the requested cores.
  Not used when the request names its own machine type.
- ``nic_id``: ARM id of an existing network interface (required for now: LabBatch does not yet
  create NICs, so a pool can run one VM per NIC).
- ``worker_host``: the IP address or host name of that NIC that the driver dials (required with
  ``nic_id``; when LabBatch creates NICs it will read the address from the NIC).
- ``ssh_public_key``: Azure refuses Linux VMs without one, since password login is disabled.
- ``image``: optional Marketplace image URN ``publisher:offer:sku:version`` (default Debian 12).
- ``base_url``: optional Resource Manager endpoint (private endpoints, tests).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.clouds.azure.resources import POOL_TAG, AzureResources, ImageRef, VmSpec
from app.clouds.base import CreatedInstance, InstanceRequest, LostCallback
from app.errors import CloudError
from app.protocol import TOKEN_ENV

log = logging.getLogger("labbatch.clouds.azure")

PoolConfig = Callable[[str], Mapping[str, Any]]
ResourcesFactory = Callable[[str, Mapping[str, Any]], AzureResources]
PREEMPTED = "preempted"
# Power states in which the worker cannot be running; Spot eviction with policy Deallocate
# leaves the VM "deallocated".
STOPPED_POWER_STATES = frozenset({"deallocating", "deallocated", "stopping", "stopped"})
LOCATION_KEYS = ("subscription_id", "resource_group", "location")


def placeholder_startup_script(request: InstanceRequest) -> str:
    """The stand-in startup script until the TLS work brings the real one."""
    return "echo 'LabBatch: the worker startup script comes with the TLS work (issue 6)'\n"


def custom_data(token: str, startup_script: str) -> str:
    """The VM's custom data: a shell script exporting the instance token, then the script."""
    return f"#!/bin/sh\nexport {TOKEN_ENV}={shlex.quote(token)}\n{startup_script}"


def default_resources(pool: str, config: Mapping[str, Any]) -> AzureResources:
    """A resource manager using DefaultAzureCredential for the pool's subscription and group."""
    return AzureResources(
        _required(pool, config, "subscription_id"),
        _required(pool, config, "resource_group"),
        _required(pool, config, "location"),
        base_url=config.get("base_url"),
    )


def _required(pool: str, config: Mapping[str, Any], key: str, why: str = "") -> str:
    value = config.get(key)
    if not value or not isinstance(value, str):
        hint = f" ({why})" if why else ""
        raise CloudError(f"Azure pool {pool!r} has no {key!r} in its configuration{hint}.")
    return value


def _image(pool: str, config: Mapping[str, Any]) -> ImageRef:
    urn = config.get("image")
    if not urn:
        return ImageRef()
    parts = str(urn).split(":")
    if len(parts) != 4 or not all(parts):
        raise CloudError(
            f"Azure pool {pool!r} has image {urn!r}; write it as publisher:offer:sku:version, "
            "e.g. Debian:debian-12:12-gen2:latest."
        )
    return ImageRef(*parts)


def _vm_sizes(pool: str, config: Mapping[str, Any], request: InstanceRequest) -> list[str]:
    if request.machine_type:
        return [request.machine_type]
    first = _required(pool, config, "vm_size")
    fallbacks = config.get("fallback_vm_sizes") or []
    if not isinstance(fallbacks, list) or not all(isinstance(s, str) for s in fallbacks):
        raise CloudError(f"Azure pool {pool!r}: 'fallback_vm_sizes' must be a list of VM sizes.")
    return list(dict.fromkeys([first, *fallbacks]))


def _lost_reason(power_state: str | None, *, exists: bool, spot: bool) -> str | None:
    """Why a watched VM counts as lost, or None while it may still run its worker."""
    if exists and power_state not in STOPPED_POWER_STATES:
        return None
    if spot:
        return PREEMPTED
    return f"VM {power_state} outside LabBatch" if exists else "VM deleted outside LabBatch"


@dataclass(slots=True)
class _Owned:
    pool: str
    resources: AzureResources
    spot: bool


class AzureCloud:
    """Creates Azure VMs for pools, watches them for eviction and deletes them on close."""

    kind = "azure"

    def __init__(
        self,
        pool_config: PoolConfig,
        *,
        resources_factory: ResourcesFactory = default_resources,
        startup_script: Callable[[InstanceRequest], str] = placeholder_startup_script,
        worker_port: int = 8443,
        poll_interval_s: float = 30.0,
    ) -> None:
        self._pool_config = pool_config
        self._resources_factory = resources_factory
        self._startup_script = startup_script
        self.worker_port = worker_port
        self.poll_interval_s = poll_interval_s
        self._resources: dict[tuple[str, ...], AzureResources] = {}
        self._owned: dict[str, _Owned] = {}
        self._deleting: set[str] = set()
        self._reported: set[str] = set()
        self._lost: LostCallback | None = None
        self._watcher: asyncio.Task[None] | None = None

    def on_lost(self, callback: LostCallback) -> None:
        self._lost = callback

    def _resources_for(self, pool: str, config: Mapping[str, Any]) -> AzureResources:
        """One resource manager (one HTTP session) per subscription, group and location."""
        key = (*(_required(pool, config, k) for k in LOCATION_KEYS), config.get("base_url") or "")
        if key not in self._resources:
            self._resources[key] = self._resources_factory(pool, config)
        return self._resources[key]

    async def create_instance(self, request: InstanceRequest) -> CreatedInstance:
        pool = request.pool
        config = self._pool_config(pool)
        resources = self._resources_for(pool, config)
        if request.location and request.location != resources.location:
            raise CloudError(
                f"Azure pool {pool!r} runs in {resources.location}, not {request.location}."
            )
        nic_why = "LabBatch does not create network interfaces yet; make one and give its id"
        base = VmSpec(
            name=request.name,
            vm_size="",
            nic_id=_required(pool, config, "nic_id", nic_why),
            pool=pool,
            image=_image(pool, config),
            ssh_public_key=_required(
                pool, config, "ssh_public_key", "Azure requires an SSH key for Linux VMs"
            ),
            custom_data=custom_data(request.token, self._startup_script(request)),
            spot=request.preemptible,
        )
        host = _required(pool, config, "worker_host", "the address of the network interface")
        reasons: list[str] = []
        for vm_size in _vm_sizes(pool, config, request):
            spec = replace(base, vm_size=vm_size)
            try:
                await resources.create_vm(spec)
            except CloudError as exc:
                await self._remove_failed(resources, request.name)
                if not exc.transient:
                    raise
                reasons.append(f"{vm_size}: {exc}")
                continue
            self._owned[request.name] = _Owned(pool, resources, request.preemptible)
            self._start_watching()
            return CreatedInstance(
                name=request.name,
                address=f"{host}:{self.worker_port}",
                location=resources.location,
                handle={
                    "pool": pool,
                    "subscription_id": resources.subscription_id,
                    "resource_group": resources.resource_group,
                    "location": resources.location,
                    "vm_size": vm_size,
                    "spot": request.preemptible,
                },
            )
        raise CloudError(
            f"Azure could not create {request.name} in {resources.location} with any VM size of "
            f"pool {pool!r}:\n" + "\n".join(reasons),
            transient=True,
        )

    async def _remove_failed(self, resources: AzureResources, name: str) -> None:
        """Delete what a failed create may have left (a VM in state Failed keeps its name)."""
        try:
            await resources.delete_vm(name)
        except CloudError as exc:
            log.warning("could not remove failed VM %s: %s", name, exc)

    async def adopt_instance(self, name: str, handle: dict[str, Any]) -> bool:
        pool = handle.get("pool")
        if not isinstance(pool, str):
            return False
        config = dict(self._pool_config(pool))
        config.update({k: handle[k] for k in LOCATION_KEYS if handle.get(k)})
        resources = self._resources_for(pool, config)
        vm = await resources.get_vm(name)
        if vm is None or vm.power_state != "running":
            return False
        self._owned[name] = _Owned(pool, resources, bool(handle.get("spot")))
        self._start_watching()
        return True

    async def delete_instance(self, name: str) -> None:
        owned = self._owned.get(name)
        if owned is None:
            return
        self._deleting.add(name)  # stays marked if deleting fails: never report our own delete
        await owned.resources.delete_vm(name)
        self._owned.pop(name, None)
        self._deleting.discard(name)
        self._reported.discard(name)

    def _start_watching(self) -> None:
        # a task of its own, not the engine's TaskManager: clouds sit below the engine
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())
            self._watcher.set_name("azure-watch")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self._check_owned()
            except Exception:
                log.exception("checking the Azure VMs failed; trying again")

    async def _check_owned(self) -> None:
        """Poll every watched VM once; report the evicted or vanished ones."""
        names = [n for n in self._owned if n not in self._deleting and n not in self._reported]
        results = await asyncio.gather(
            *(self._check(name, self._owned[name]) for name in names), return_exceptions=True
        )
        for name, result in zip(names, results, strict=True):
            if isinstance(result, Exception):
                log.warning("could not check Azure VM %s: %s", name, result)

    async def _check(self, name: str, owned: _Owned) -> None:
        vm = await owned.resources.get_vm(name)
        if name not in self._owned or name in self._deleting or name in self._reported:
            return  # deleted or reported while we asked
        reason = _lost_reason(
            vm.power_state if vm else None, exists=vm is not None, spot=owned.spot
        )
        if reason is None:
            return
        self._reported.add(name)  # kept as owned so delete_instance still frees its disk
        if self._lost is not None:
            self._lost(name, reason)

    async def orphans(self, pool: str, known_names: Collection[str]) -> list[str]:
        """LabBatch VMs of this pool in its resource group that the engine does not know."""
        resources = self._resources_for(pool, self._pool_config(pool))
        vms = await resources.list_labbatch_vms()
        return sorted(
            vm.name for vm in vms if vm.tags.get(POOL_TAG) == pool and vm.name not in known_names
        )

    async def delete_orphans(self, pool: str, known_names: Collection[str]) -> list[str]:
        """Delete this pool's orphaned VMs (after a crash); returns their names."""
        names = await self.orphans(pool, known_names)
        resources = self._resources_for(pool, self._pool_config(pool))
        await asyncio.gather(*(resources.delete_vm(name) for name in names))
        return names

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        self._watcher = None
        names = list(self._owned)
        results = await asyncio.gather(
            *(self.delete_instance(name) for name in names), return_exceptions=True
        )
        for name, result in zip(names, results, strict=True):
            if isinstance(result, Exception):
                log.error("could not delete Azure VM %s on close: %s", name, result)
        for resources in self._resources.values():
            await resources.close()
        self._resources.clear()
