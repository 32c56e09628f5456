"""Azure VMs behind the CloudDriver interface: create with size fallback, watch for eviction.

Each VM boots a LabBatch worker from its custom data (bootstrap.inline_startup_script: the token,
a fresh TLS key and certificate, the agent's install). The VM makes its own network interface in
the pool's subnet, behind the pool's network security group (ensured here), and unless the pool
uses private addresses a static public IP; Azure deletes both with the VM. The driver pins the
worker's certificate by its SHA-256 (``handle["tls_sha256"]``). Pool configuration keys: see
app.clouds.azure.config.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.clouds.azure.config import AzurePoolSettings, parse_config
from app.clouds.azure.errors import UnknownVmSizeError
from app.clouds.azure.resources import (
    DEFAULT_POLLING_INTERVAL_S,
    POOL_TAG,
    AzureResources,
    VmInfo,
    VmSpec,
)
from app.clouds.base import TLS_PIN_KEY, CreatedInstance, InstanceRequest, LostCallback
from app.clouds.bootstrap import WorkerBoot, inline_startup_script, make_tls_identity
from app.clouds.watch import Watcher
from app.errors import CloudError

log = logging.getLogger("labbatch.clouds.azure")

PoolConfig = Callable[[str], Mapping[str, Any]]
ResourcesFactory = Callable[[AzurePoolSettings], AzureResources]
PREEMPTED = "preempted"
# Power states in which the worker cannot be running; Spot eviction with policy Deallocate
# leaves the VM "deallocated".
STOPPED_POWER_STATES = frozenset({"deallocating", "deallocated", "stopping", "stopped"})
SAME_CORES_LIMIT = 12
_SIZE_CORES = re.compile(r"^(?:Standard|Basic)_[A-Za-z]+(\d+)")


def default_resources(
    settings: AzurePoolSettings, *, polling_interval_s: float = DEFAULT_POLLING_INTERVAL_S
) -> AzureResources:
    """A resource manager for the pool's subscription and group: DefaultAzureCredential over
    https, or a dummy credential for a plain-http endpoint on loopback (a local proxy, a fake)."""
    from app.clouds.azure.credentials import loopback_auth

    credential, policies = loopback_auth(settings.base_url)
    return AzureResources(
        settings.subscription_id,
        settings.resource_group,
        settings.location,
        base_url=settings.base_url,
        credential=credential,
        polling_interval_s=polling_interval_s,
        per_call_policies=policies,
    )


def _vm_sizes(pool: str, settings: AzurePoolSettings, request: InstanceRequest) -> list[str]:
    if request.machine_type:
        return [request.machine_type]
    if not settings.vm_size:
        raise CloudError(
            f"Azure pool {pool!r} has no 'vm_size' in its configuration (e.g. Standard_D4s_v3)."
        )
    return list(dict.fromkeys([settings.vm_size, *settings.fallback_vm_sizes]))


def size_cores(vm_size: str) -> int | None:
    """The cores of a VM size as its name tells them (Standard_D4s_v5 → 4), None if it does not."""
    match = _SIZE_CORES.match(vm_size)
    return int(match.group(1)) if match else None


def unknown_size_error(
    pool: str,
    location: str,
    vm_size: str,
    cores: int,
    offered: list[tuple[str, int, int]],
    cause: CloudError,
) -> CloudError:
    """The lasting error for a VM size Azure does not offer, naming the location's sizes with
    the same cores."""
    same = [name for name, size_cores, _ in offered if size_cores == cores]
    if same:
        more = len(same) - SAME_CORES_LIMIT
        listed = ", ".join(same[:SAME_CORES_LIMIT]) + (f" and {more} more" if more > 0 else "")
        hint = f"; sizes there with {cores} cores: {listed}"
    else:
        hint = ""
    return CloudError(
        f"Azure pool {pool!r}: VM size {vm_size} is not offered in {location}{hint} "
        f"(`labbatch pool offers {pool}` lists them; set --vm-size or --fallback-vm-sizes). "
        f"{cause}",
        transient=False,
    )


def startup_script(request: InstanceRequest, settings: AzurePoolSettings) -> tuple[str, str]:
    """(the VM's custom data, the SHA-256 pin of the worker's new certificate)."""
    tls = make_tls_identity(request.name)
    boot = WorkerBoot(
        request.name,
        cores_mcpu=request.cores_mcpu,
        token=request.token,
        tls=tls,
        port=settings.worker_port,
        requirement=settings.worker_requirement,
        idle_timeout_s=request.idle_timeout_s,
    )
    return inline_startup_script(boot), tls.sha256


def _lost_reason(
    power_state: str | None, *, exists: bool, spot: bool, provisioning: str | None = None
) -> str | None:
    """Why a watched VM counts as lost, or None while it may still run its worker."""
    if exists and (provisioning or "").lower() == "failed":
        return "Azure reports the VM's provisioning Failed"
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
        poll_interval_s: float = 30.0,
    ) -> None:
        self._pool_config = pool_config
        self._resources_factory = resources_factory
        self.poll_interval_s = poll_interval_s
        self._resources: dict[tuple[str, ...], AzureResources] = {}
        self._owned: dict[str, _Owned] = {}
        self._deleting: set[str] = set()
        self._reported: set[str] = set()
        self._lost: LostCallback | None = None
        self._watcher = Watcher(
            "azure-watch", self._check_owned, lambda: self.poll_interval_s, "the Azure VMs"
        )
        # pool -> (what its NSG was made for, the NSG's id): ensured once per process
        self._nsgs: dict[str, tuple[tuple[Any, ...], str]] = {}
        self._nsg_locks: dict[str, asyncio.Lock] = {}

    def on_lost(self, callback: LostCallback) -> None:
        self._lost = callback

    def _settings(self, pool: str) -> AzurePoolSettings:
        return parse_config(pool, self._pool_config(pool))

    def _resources_for(self, settings: AzurePoolSettings) -> AzureResources:
        """One resource manager (one HTTP session) per subscription, group and location."""
        key = (
            settings.subscription_id,
            settings.resource_group,
            settings.location,
            settings.base_url or "",
        )
        if key not in self._resources:
            self._resources[key] = self._resources_factory(settings)
        return self._resources[key]

    async def _ensure_nsg(
        self, pool: str, settings: AzurePoolSettings, resources: AzureResources
    ) -> str:
        """The id of the pool's NSG, made or updated when first needed or after the
        configuration changed."""
        wanted = (
            resources.subscription_id,
            resources.resource_group,
            resources.location,
            settings.base_url,
            settings.worker_port,
            settings.allow_from,
        )
        async with self._nsg_locks.setdefault(pool, asyncio.Lock()):
            done = self._nsgs.get(pool)
            if done is not None and done[0] == wanted:
                return done[1]
            nsg_id = await resources.ensure_worker_nsg(
                pool, settings.worker_port, settings.allow_from
            )
            self._nsgs[pool] = (wanted, nsg_id)
            return nsg_id

    async def create_instance(self, request: InstanceRequest) -> CreatedInstance:
        pool = request.pool
        settings = self._settings(pool)
        resources = self._resources_for(settings)
        if request.location and request.location != resources.location:
            raise CloudError(
                f"Azure pool {pool!r} runs in {resources.location}, not {request.location}."
            )
        sizes = _vm_sizes(pool, settings, request)
        nsg_id = await self._ensure_nsg(pool, settings, resources)
        custom_data, tls_sha256 = startup_script(request, settings)
        base = VmSpec(
            name=request.name,
            vm_size="",
            subnet_id=settings.subnet_id,
            nsg_id=nsg_id,
            pool=pool,
            public_ip=not settings.use_private_ip,
            image=settings.image,
            ssh_public_key=settings.ssh_public_key,
            custom_data=custom_data,
            spot=request.preemptible,
        )
        vm_size, vm = await self._create_vm(resources, base, sizes, request.cores_mcpu)
        try:
            if vm.nic_id is None:
                raise CloudError(f"Azure reported no network interface for VM {request.name}.")
            ip = await resources.vm_address(vm.nic_id, public=not settings.use_private_ip)
        except CloudError:
            await self._remove_failed(resources, request.name)
            raise
        self._owned[request.name] = _Owned(pool, resources, request.preemptible)
        self._watcher.start()
        host = f"[{ip}]" if ":" in ip else ip
        return CreatedInstance(
            name=request.name,
            address=f"{host}:{settings.worker_port}",
            location=resources.location,
            handle={
                "pool": pool,
                "subscription_id": resources.subscription_id,
                "resource_group": resources.resource_group,
                "location": resources.location,
                "vm_size": vm_size,
                "spot": request.preemptible,
                TLS_PIN_KEY: tls_sha256,
                "port": settings.worker_port,
            },
        )

    async def _create_vm(
        self, resources: AzureResources, base: VmSpec, sizes: list[str], cores_mcpu: int
    ) -> tuple[str, VmInfo]:
        """Create the VM with the first size Azure accepts; (that size, the VM). A size Azure
        does not offer is a setting to change: it stops the fallback at once."""
        reasons: list[str] = []
        for vm_size in sizes:
            try:
                return vm_size, await resources.create_vm(replace(base, vm_size=vm_size))
            except UnknownVmSizeError as exc:
                await self._remove_failed(resources, base.name)
                cores = size_cores(vm_size) or max(1, round(cores_mcpu / 1000))
                offered = await self._vm_sizes_quietly(resources)
                raise unknown_size_error(
                    base.pool, resources.location, vm_size, cores, offered, exc
                ) from exc
            except CloudError as exc:
                await self._remove_failed(resources, base.name)
                if not exc.transient:
                    raise
                reasons.append(f"{vm_size}: {exc}")
        raise CloudError(
            f"Azure could not create {base.name} in {resources.location} with any VM size of "
            f"pool {base.pool!r}:\n" + "\n".join(reasons),
            transient=True,
        )

    async def _vm_sizes_quietly(self, resources: AzureResources) -> list[tuple[str, int, int]]:
        """The location's VM sizes, or none when they cannot be listed (only for the hint)."""
        try:
            return await resources.vm_sizes()
        except CloudError as exc:
            log.warning("could not list the VM sizes of %s: %s", resources.location, exc)
            return []

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
        resources = self._resources_for(self._settings(pool).with_location(handle))
        vm = await resources.get_vm(name)
        if vm is None or vm.power_state != "running":
            return False
        self._owned[name] = _Owned(pool, resources, bool(handle.get("spot")))
        self._watcher.start()
        return True

    async def delete_instance(self, name: str, *, handle: dict[str, Any] | None = None) -> None:
        """Delete the VM (with its disk, NIC and IP) and wait for Azure to confirm; a VM this
        driver does not own is found by ``handle``'s pool (and location)."""
        owned = self._owned.get(name)
        if owned is not None:
            resources = owned.resources
        elif handle and isinstance(handle.get("pool"), str):
            settings = self._settings(handle["pool"])
            resources = self._resources_for(settings.with_location(handle))
        else:
            return
        self._deleting.add(name)  # stays marked if deleting fails: never report our own delete
        await resources.delete_vm(name)
        self._owned.pop(name, None)
        self._deleting.discard(name)
        self._reported.discard(name)

    async def boot_log(self, name: str) -> str:
        """The VM's serial log from Azure boot diagnostics."""
        owned = self._owned.get(name)
        return await owned.resources.boot_log(name) if owned is not None else ""

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
            vm.power_state if vm else None,
            exists=vm is not None,
            spot=owned.spot,
            provisioning=vm.provisioning_state if vm else None,
        )
        if reason is None:
            return
        self._reported.add(name)  # kept as owned so delete_instance still frees its disk
        if self._lost is not None:
            self._lost(name, reason)

    async def orphans(self, pool: str, known_names: Collection[str]) -> list[str]:
        """LabBatch VMs of this pool in its resource group that the engine does not know."""
        resources = self._resources_for(self._settings(pool))
        vms = await resources.list_labbatch_vms()
        return sorted(
            vm.name for vm in vms if vm.tags.get(POOL_TAG) == pool and vm.name not in known_names
        )

    async def delete_orphans(self, pool: str, known_names: Collection[str]) -> list[str]:
        """Delete this pool's orphaned VMs (after a crash); returns their names."""
        names = await self.orphans(pool, known_names)
        resources = self._resources_for(self._settings(pool))
        await asyncio.gather(*(resources.delete_vm(name) for name in names))
        return names

    async def release(self) -> None:
        """Stop watching and forget the VMs, which keep running for the next driver."""
        await self._watcher.stop()
        self._owned.clear()
        await self._close_clients()

    async def _close_clients(self) -> None:
        for resources in self._resources.values():
            await resources.close()
        self._resources.clear()

    async def close(self) -> None:
        await self._watcher.stop()
        names = list(self._owned)
        results = await asyncio.gather(
            *(self.delete_instance(name) for name in names), return_exceptions=True
        )
        for name, result in zip(names, results, strict=True):
            if isinstance(result, Exception):
                log.error("could not delete Azure VM %s on close: %s", name, result)
        await self._close_clients()
