"""Compute Engine behind the CloudDriver interface: zone fallback, preemption watch, orphans.

Each VM gets a fresh TLS identity; its token, certificate and key travel in the VM's metadata
and its start-up script installs and starts the worker (app.clouds.bootstrap). The pool's
firewall rule is made or brought up to date before the pool's first VM (app.clouds.gcp.firewall).
The pool configuration keys are described in app.clouds.gcp.config.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from app.clouds.base import TLS_PIN_KEY, CreatedInstance, InstanceRequest, LostCallback
from app.clouds.bootstrap import (
    WorkerBoot,
    gce_secret_metadata,
    gce_startup_script,
    make_tls_identity,
)
from app.clouds.gcp.config import PoolSettings, is_loopback_http, is_plain_http, pool_settings
from app.clouds.gcp.errors import UnknownMachineTypeError
from app.clouds.gcp.firewall import FirewallRule, rule_name
from app.clouds.gcp.machine_types import not_offered_error
from app.clouds.gcp.resources import DEFAULT_NETWORK, GceResources, MachineType, VmInfo, VmSpec
from app.clouds.retry import retry_transient
from app.clouds.watch import Watcher
from app.errors import CloudError

log = logging.getLogger("labbatch.clouds.gcp")

POOL_LABEL = "labbatch-pool"
INSTANCE_LABEL = "labbatch-instance"
STARTUP_SCRIPT_KEY = "startup-script"
# A VM in one of these states no longer runs its worker (spot preemption stops it first).
LOST_STATES = frozenset({"STOPPING", "STOPPED", "TERMINATED", "SUSPENDING", "SUSPENDED"})
_LABEL_INVALID = re.compile(r"[^a-z0-9_-]")

ResourcesFactory = Callable[[Mapping[str, Any]], GceResources]


def label_value(text: str) -> str:
    """``text`` as a valid Compute Engine label value (lowercase, [a-z0-9_-], ≤ 63 chars)."""
    return _LABEL_INVALID.sub("-", text.lower())[:63]


def default_resources(config: Mapping[str, Any], *, poll_interval_s: float = 1.0) -> GceResources:
    """Application Default Credentials, or none at all for a fake or proxy on loopback."""
    endpoint = config.get("api_endpoint")
    credentials: Any = None
    if is_loopback_http(endpoint):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()  # credentials never travel over plain http
    elif is_plain_http(endpoint):
        raise CloudError(
            f"the Compute Engine API address {endpoint} is plain http to another machine; "
            "LabBatch sends no credentials unencrypted: use https"
        )
    return GceResources(
        str(config["project"]),
        api_endpoint=endpoint,
        credentials=credentials,
        poll_interval_s=poll_interval_s,
    )


@dataclass(frozen=True, slots=True)
class _OwnedVm:
    pool: str
    zone: str
    spot: bool
    resources: GceResources


class GceCloud:
    """Creates worker VMs in a pool's zones, watches spot VMs for preemption, cleans orphans."""

    kind = "gcp"

    def __init__(
        self,
        pool_config: Callable[[str], Mapping[str, Any]],
        *,
        resources_factory: ResourcesFactory | None = None,
        poll_interval_s: float = 15.0,
        operation_poll_interval_s: float = 1.0,
    ) -> None:
        self._pool_config = pool_config
        self._resources_factory = resources_factory or self._default_resources
        self.poll_interval_s = poll_interval_s
        self.operation_poll_interval_s = operation_poll_interval_s
        self._resources: dict[tuple[str, str | None], GceResources] = {}
        self._owned: dict[str, _OwnedVm] = {}
        # owned VMs being deleted, or reported lost: the watcher reports neither (again)
        self._deleting: set[str] = set()
        self._reported: set[str] = set()
        self._lost: LostCallback | None = None
        self._watcher = Watcher(
            "gce-watch", self._check_owned, lambda: self.poll_interval_s, "the Compute Engine VMs"
        )
        # the firewall rule last made sure of, per pool (re-checked when the pool's config changes)
        self._firewalls: dict[str, FirewallRule] = {}
        self._firewall_locks: dict[str, asyncio.Lock] = {}

    def _default_resources(self, config: Mapping[str, Any]) -> GceResources:
        return default_resources(config, poll_interval_s=self.operation_poll_interval_s)

    def _pool(self, pool: str) -> tuple[PoolSettings, GceResources]:
        try:
            config = self._pool_config(pool)
        except KeyError as exc:
            raise CloudError(f"pool {pool} has no configuration; create the pool first") from exc
        settings = pool_settings(pool, config)
        key = (settings.project, settings.api_endpoint)
        if key not in self._resources:  # pools of one project share the API clients
            self._resources[key] = self._resources_factory(config)
        return settings, self._resources[key]

    def on_lost(self, callback: LostCallback) -> None:
        self._lost = callback

    async def create_instance(self, request: InstanceRequest) -> CreatedInstance:
        settings, resources = self._pool(request.pool)
        machine_type = request.machine_type or settings.machine_type
        if not machine_type:
            raise CloudError(
                f"pool {request.pool}: the Compute Engine setting 'machine_type' is missing; "
                "set it in the pool's configuration (e.g. n2-standard-8)"
            )
        await self._ensure_firewall(request.pool, settings, resources)
        boot = WorkerBoot(
            request.name,
            cores_mcpu=request.cores_mcpu,
            token=request.token,
            tls=make_tls_identity(request.name),
            port=settings.worker_port,
            requirement=settings.worker_requirement or "",
            idle_timeout_s=request.idle_timeout_s,
        )
        # the secrets go to the VM only; never log this dict
        metadata = {**gce_secret_metadata(boot), STARTUP_SCRIPT_KEY: gce_startup_script(boot)}
        zone, ip = await self._create_in_zones(request, settings, resources, machine_type, metadata)
        self._owned[request.name] = _OwnedVm(request.pool, zone, request.preemptible, resources)
        self._watcher.start()
        return CreatedInstance(
            name=request.name,
            address=f"{ip}:{settings.worker_port}",
            location=zone,
            handle={
                "project": settings.project,
                "zone": zone,
                "pool": request.pool,
                "spot": request.preemptible,
                "machine_type": machine_type,
                "port": settings.worker_port,
                TLS_PIN_KEY: boot.tls.sha256,
            },
        )

    async def _create_in_zones(
        self,
        request: InstanceRequest,
        settings: PoolSettings,
        resources: GceResources,
        machine_type: str,
        metadata: dict[str, str],
    ) -> tuple[str, str]:
        """Try the pool's zones in turn; returns the zone and the IP address to dial."""
        zones = list(settings.zones)
        if request.location:  # a requested zone goes first, the pool's others remain fallbacks
            zones = [request.location] + [z for z in zones if z != request.location]
        failures: list[str] = []
        offered: dict[str, list[MachineType]] = {}  # zones without the machine type: theirs
        for zone in zones:
            spec = self._spec(request, settings, zone, machine_type, metadata)
            try:
                ip = await self._create_in_zone(resources, spec, settings)
            except UnknownMachineTypeError as exc:
                log.warning("zone %s does not offer %s, trying the next zone", zone, machine_type)
                offered[zone] = await self._machine_types_quietly(resources, zone)
                failures.append(f"{zone}: {exc}")
                continue
            except CloudError as exc:
                if not exc.transient:
                    raise
                log.warning(
                    "could not create %s in %s, trying the next zone: %s", spec.name, zone, exc
                )
                failures.append(f"{zone}: {exc}")
                continue
            return zone, ip
        if len(offered) == len(zones):  # no zone has it: a setting to change, not to retry
            every = [m for types in offered.values() for m in types]
            raise not_offered_error(request.pool, machine_type, zones, every)
        raise CloudError(
            f"pool {request.pool}: Compute Engine could not create VM {request.name} in any of "
            f"the pool's zones; LabBatch will back off and retry. " + " | ".join(failures),
            transient=True,
        )

    async def _machine_types_quietly(self, resources: GceResources, zone: str) -> list[MachineType]:
        """The zone's machine types, or none when they cannot be listed (only for hints)."""
        try:
            return await resources.machine_types(zone)
        except CloudError as exc:
            log.warning("could not list the machine types of %s: %s", zone, exc)
            return []

    def _spec(
        self,
        request: InstanceRequest,
        settings: PoolSettings,
        zone: str,
        machine_type: str,
        metadata: dict[str, str],
    ) -> VmSpec:
        return VmSpec(
            name=request.name,
            zone=zone,
            machine_type=machine_type,
            boot_disk_gb=settings.boot_disk_gb,
            image=settings.image,
            spot=request.preemptible,
            labels={
                POOL_LABEL: label_value(request.pool),
                INSTANCE_LABEL: label_value(request.name),
            },
            metadata=metadata,
            network=settings.network,
            subnetwork=settings.subnetwork,
            network_tags=(settings.network_tag,),
        )

    async def _create_in_zone(
        self, resources: GceResources, spec: VmSpec, settings: PoolSettings
    ) -> str:
        """Create one VM and return the IP to dial; on any failure or cancellation make sure
        none is left behind."""
        try:
            info = await resources.create_vm(spec)
        except (CloudError, asyncio.CancelledError):
            # A failed or abandoned insert may still have made the VM (e.g. a timed-out operation).
            await asyncio.shield(self._delete_quietly(resources, spec.name, spec.zone))
            raise
        if settings.use_internal_ip:
            ip, which = info.internal_ip, "an internal"
        else:
            ip, which = info.external_ip or info.internal_ip, "an"
        if not ip:
            await self._delete_quietly(resources, spec.name, spec.zone)
            raise CloudError(
                f"Compute Engine created VM {spec.name} in zone {spec.zone} without {which} IP "
                "address; check the pool's network settings",
                transient=True,
            )
        return ip

    async def _ensure_firewall(
        self, pool: str, settings: PoolSettings, resources: GceResources
    ) -> None:
        """Make sure of the pool's firewall rule once per process (again if the config changed)."""
        rule = FirewallRule(
            name=rule_name(pool),
            network=settings.network or DEFAULT_NETWORK,
            port=settings.worker_port,
            source_ranges=settings.allow_from,
            target_tag=settings.network_tag,
        )
        lock = self._firewall_locks.setdefault(pool, asyncio.Lock())
        async with lock:  # concurrent creates in one pool make sure of the rule once
            if self._firewalls.get(pool) == rule:
                return
            await retry_transient(
                lambda: resources.ensure_firewall(rule), doing=f"ensure firewall rule {rule.name}"
            )
            self._firewalls[pool] = rule

    async def _delete_quietly(self, resources: GceResources, name: str, zone: str) -> None:
        try:
            await resources.delete_vm(name, zone)
        except CloudError as exc:
            log.warning("could not delete VM %s in %s: %s", name, zone, exc)

    async def adopt_instance(self, name: str, handle: dict[str, Any]) -> bool:
        pool, zone = handle.get("pool"), handle.get("zone")
        if not isinstance(pool, str) or not isinstance(zone, str):
            return False
        _, resources = self._pool(pool)
        info = await resources.get_vm(name, zone)
        if info is None or info.status in LOST_STATES:
            return False  # a stopped VM left behind is deleted by the engine or orphans()
        self._owned[name] = _OwnedVm(pool, zone, bool(handle.get("spot")), resources)
        self._watcher.start()
        return True

    async def delete_instance(self, name: str, *, handle: dict[str, Any] | None = None) -> None:
        """Delete the VM and wait until Compute Engine confirms it (404 is fine); a VM this
        driver does not own is found by ``handle``'s pool and zone (every zone of the pool
        when the zone is not known: its insert may have been cut short)."""
        owned = self._owned.get(name)
        if owned is not None:
            targets = [(owned.resources, owned.zone)]
        elif handle and isinstance(handle.get("pool"), str):
            settings, resources = self._pool(handle["pool"])
            zone = handle.get("zone")
            zones = [zone] if isinstance(zone, str) else list(settings.zones)
            targets = [(resources, z) for z in zones]
        else:
            return
        self._deleting.add(name)  # stays marked if deleting fails: never report our own delete
        for resources, zone in targets:
            await resources.delete_vm(name, zone)
        self._owned.pop(name, None)
        self._deleting.discard(name)
        self._reported.discard(name)

    async def boot_log(self, name: str) -> str:
        """The VM's serial console output (its start-up script prints there)."""
        owned = self._owned.get(name)
        if owned is None:
            return ""
        return await owned.resources.serial_port_output(name, owned.zone)

    async def release(self) -> None:
        """Stop watching and forget the VMs, which keep running for the next driver."""
        await self._watcher.stop()
        self._owned = {}

    async def close(self) -> None:
        await self._watcher.stop()
        owned, self._owned = self._owned, {}
        await asyncio.gather(
            *(self._delete_quietly(vm.resources, name, vm.zone) for name, vm in owned.items())
        )
        self._deleting.clear()
        self._reported.clear()

    async def _check_owned(self) -> None:
        """Report VMs that were preempted, stopped or disappeared, once each. They stay
        owned: the engine deletes them (a stopped standard VM still bills for its disk)."""
        for name, vm in list(self._owned.items()):
            if name in self._deleting or name in self._reported:
                continue
            try:
                info = await vm.resources.get_vm(name, vm.zone)
            except CloudError as exc:
                log.warning("could not check VM %s: %s", name, exc)
                continue
            if info is not None and info.status not in LOST_STATES:
                continue
            if self._owned.get(name) is not vm or name in self._deleting:
                continue  # deleted by us while we asked
            self._reported.add(name)
            if vm.spot:
                reason = "preempted"
            else:
                reason = f"VM {info.status}" if info else "VM deleted outside LabBatch"
            log.warning("VM %s in %s lost: %s", name, vm.zone, reason)
            if self._lost is not None:
                self._lost(name, reason)

    async def _orphan_vms(self, pool: str, known_names: Collection[str]) -> list[VmInfo]:
        settings, resources = self._pool(pool)
        vms = await resources.list_labbatch_vms(list(settings.zones))
        return [
            vm
            for vm in vms
            if vm.labels.get(POOL_LABEL) == label_value(pool)
            and vm.name not in known_names
            and vm.name not in self._owned
        ]

    async def orphans(self, pool: str, known_names: Collection[str]) -> list[str]:
        """Names of this pool's LabBatch VMs (in its zones) that are not in ``known_names``."""
        return sorted(vm.name for vm in await self._orphan_vms(pool, known_names))

    async def delete_orphans(self, pool: str, known_names: Collection[str]) -> list[str]:
        """Delete this pool's VMs not in ``known_names`` (after a crash); returns their names."""
        _, resources = self._pool(pool)
        vms = await self._orphan_vms(pool, known_names)
        await asyncio.gather(*(resources.delete_vm(vm.name, vm.zone) for vm in vms))
        for vm in vms:
            log.info("deleted orphan VM %s in %s", vm.name, vm.zone)
        return sorted(vm.name for vm in vms)
