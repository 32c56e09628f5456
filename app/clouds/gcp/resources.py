"""Compute Engine resource manager: create, delete, get and list LabBatch VMs; their firewall."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from app.clouds.gcp.errors import cloud_error, cloud_failures, translate
from app.clouds.gcp.firewall import (
    FirewallRule,
    firewall_body,
    forbidden_error,
    patch_body,
    same_network,
    wrong_network_error,
)
from app.clouds.retry import retry_transient
from app.errors import CloudError

log = logging.getLogger("labbatch.clouds.gcp")
T = TypeVar("T")

DEFAULT_IMAGE = "projects/debian-cloud/global/images/family/debian-12"
DEFAULT_NETWORK = "global/networks/default"
LABBATCH_LABEL = "labbatch"
OPERATION_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class VmSpec:
    """One VM to create: placement, size, spot or standard, labels and metadata."""

    name: str
    zone: str
    machine_type: str
    boot_disk_gb: int = 20
    image: str = DEFAULT_IMAGE
    spot: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    network: str | None = None
    subnetwork: str | None = None
    network_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VmInfo:
    """What Compute Engine says about one VM."""

    name: str
    zone: str
    status: str  # RUNNING, PROVISIONING, STAGING, STOPPING, TERMINATED, ...
    internal_ip: str | None
    external_ip: str | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MachineType:
    """One machine type a zone offers."""

    name: str
    cores: int
    memory_mb: int


def _last_segment(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def instance_body(spec: VmSpec) -> dict[str, Any]:
    """The instances.insert body (REST field names) for ``spec``."""
    interface: dict[str, Any] = {
        "network": spec.network or DEFAULT_NETWORK,
        "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}],
    }
    if spec.subnetwork:
        interface["subnetwork"] = spec.subnetwork
    body: dict[str, Any] = {
        "name": spec.name,
        "machineType": f"zones/{spec.zone}/machineTypes/{spec.machine_type}",
        "disks": [
            {
                "boot": True,
                "autoDelete": True,
                "type": "PERSISTENT",
                "initializeParams": {
                    "sourceImage": spec.image,
                    "diskSizeGb": str(spec.boot_disk_gb),
                },
            }
        ],
        "networkInterfaces": [interface],
        "labels": {**spec.labels, LABBATCH_LABEL: "true"},
        "metadata": {"items": [{"key": k, "value": v} for k, v in spec.metadata.items()]},
    }
    if spec.network_tags:
        body["tags"] = {"items": list(spec.network_tags)}
    if spec.spot:
        body["scheduling"] = {
            "provisioningModel": "SPOT",
            "instanceTerminationAction": "DELETE",
            "automaticRestart": False,
            "onHostMaintenance": "TERMINATE",
        }
    return body


def _vm_info(instance: Any) -> VmInfo:
    internal_ip: str | None = None
    external_ip: str | None = None
    if instance.network_interfaces:
        nic = instance.network_interfaces[0]
        internal_ip = nic.network_i_p or None
        if nic.access_configs:
            external_ip = nic.access_configs[0].nat_i_p or None
    return VmInfo(
        name=instance.name,
        zone=_last_segment(instance.zone),
        status=instance.status,
        internal_ip=internal_ip,
        external_ip=external_ip,
        labels=dict(instance.labels),
    )


@dataclass(frozen=True, slots=True)
class _Clients:
    instances: Any
    zone_operations: Any
    global_operations: Any
    machine_types: Any
    firewalls: Any


class GceResources:
    """Creates, deletes, inspects and lists LabBatch VMs in one Google Cloud project."""

    def __init__(
        self,
        project: str,
        *,
        api_endpoint: str | None = None,
        credentials: Any = None,
        poll_interval_s: float = 1.0,
        operation_timeout_s: float = OPERATION_TIMEOUT_S,
    ) -> None:
        self.project = project
        self.api_endpoint = api_endpoint
        self.poll_interval_s = poll_interval_s
        self.operation_timeout_s = operation_timeout_s
        self._credentials = credentials  # None → Application Default Credentials; never logged
        self._clients: _Clients | None = None
        self._clients_lock = asyncio.Lock()
        self._machine_types: dict[str, list[MachineType]] = {}  # by zone; they rarely change

    async def _get_clients(self) -> _Clients:
        """The SDK clients, built once off the loop (finding credentials may do I/O)."""
        async with self._clients_lock:
            if self._clients is None:
                try:
                    self._clients = await asyncio.to_thread(self._build_clients)
                except cloud_failures() as exc:
                    raise translate(exc, doing="connect") from exc
            return self._clients

    def _build_clients(self) -> _Clients:
        from google.cloud import compute_v1

        options: dict[str, Any] = {}
        if self.api_endpoint:
            options["api_endpoint"] = self.api_endpoint
        kwargs: dict[str, Any] = {
            "transport": "rest",
            "credentials": self._credentials,
            "client_options": options,
        }
        return _Clients(
            instances=compute_v1.InstancesClient(**kwargs),
            # Our own operations clients: the one inside Operation.result() ignores api_endpoint.
            zone_operations=compute_v1.ZoneOperationsClient(**kwargs),
            global_operations=compute_v1.GlobalOperationsClient(**kwargs),
            machine_types=compute_v1.MachineTypesClient(**kwargs),
            firewalls=compute_v1.FirewallsClient(**kwargs),
        )

    async def _call_once(self, fn: Callable[[], T], *, doing: str, zone: str | None) -> T:
        """Run one blocking SDK call in a thread, translating its failures."""
        try:
            return await asyncio.to_thread(fn)
        except cloud_failures() as exc:
            raise translate(exc, doing=doing, zone=zone) from exc

    async def _call(self, fn: Callable[[], T], *, doing: str, zone: str | None) -> T:
        """Run a call that is safe to repeat, again after a transient failure (a 503)."""
        return await retry_transient(
            lambda: self._call_once(fn, doing=doing, zone=zone), doing=doing
        )

    async def create_vm(self, spec: VmSpec) -> VmInfo:
        """Create a VM, wait for the insert operation to finish and return its state."""
        from google.cloud import compute_v1

        instances = (await self._get_clients()).instances
        resource = compute_v1.Instance.from_json(json.dumps(instance_body(spec)))
        doing = f"create VM {spec.name} ({spec.machine_type})"
        # one id for every try of this insert: Compute Engine answers a repeated one with the
        # first one's operation, so an insert whose answer was lost never makes two VMs
        request_id = str(uuid.uuid4())
        op = await self._call(
            lambda: instances.insert_unary(
                request=compute_v1.InsertInstanceRequest(
                    project=self.project,
                    zone=spec.zone,
                    instance_resource=resource,
                    request_id=request_id,
                )
            ),
            doing=doing,
            zone=spec.zone,
        )
        await self._wait(op, doing=doing, zone=spec.zone)
        log.info("created VM %s in %s", spec.name, spec.zone)
        info = await self.get_vm(spec.name, spec.zone)
        if info is None:
            raise CloudError(
                f"Compute Engine created VM {spec.name} in zone {spec.zone} but it is gone "
                "(preempted at once?); LabBatch will try again",
                transient=True,
            )
        return info

    async def _wait(self, op: Any, *, doing: str, zone: str | None) -> None:
        """Poll a zone operation (a global one if ``zone`` is None) until DONE; raise
        CloudError if it failed."""
        from google.cloud import compute_v1

        clients = await self._get_clients()
        if zone is None:
            poll = partial(clients.global_operations.get, project=self.project)
        else:
            poll = partial(clients.zone_operations.get, project=self.project, zone=zone)
        where = f" in zone {zone}" if zone else ""
        done = compute_v1.Operation.Status.DONE
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.operation_timeout_s
        while op.status != done:
            if loop.time() > deadline:
                raise CloudError(
                    f"Compute Engine did not finish operation {op.name} ({doing}){where} "
                    f"within {self.operation_timeout_s:.0f} s; check it in the Cloud console",
                    transient=True,
                )
            await asyncio.sleep(self.poll_interval_s)
            op = await self._call(partial(poll, operation=op.name), doing=doing, zone=zone)
        if op.error and op.error.errors:
            reasons = [e.code for e in op.error.errors]
            detail = "; ".join(e.message for e in op.error.errors if e.message) or "failed"
            status = op.http_error_status_code or None
            raise cloud_error(status, reasons, detail, doing=doing, zone=zone)

    async def delete_vm(self, name: str, zone: str) -> None:
        """Delete a VM and wait until it is gone; a VM that does not exist is fine."""
        from google.api_core.exceptions import NotFound
        from google.cloud import compute_v1

        instances = (await self._get_clients()).instances
        doing = f"delete VM {name}"
        request_id = str(uuid.uuid4())

        def delete() -> Any:
            try:
                return instances.delete_unary(
                    request=compute_v1.DeleteInstanceRequest(
                        project=self.project, zone=zone, instance=name, request_id=request_id
                    )
                )
            except NotFound:
                return None

        # one quick second try; the caller keeps a delete that still fails and tries later
        op = await retry_transient(
            lambda: self._call_once(delete, doing=doing, zone=zone),
            doing=doing,
            delays_s=(0.2,),
        )
        if op is None:
            return
        await self._wait(op, doing=doing, zone=zone)
        log.info("deleted VM %s in %s", name, zone)

    async def serial_port_output(self, name: str, zone: str) -> str:
        """What the VM printed on its serial console (its start-up script's output)."""
        instances = (await self._get_clients()).instances
        output = await self._call(
            lambda: instances.get_serial_port_output(
                project=self.project, zone=zone, instance=name
            ),
            doing=f"read the serial console of VM {name}",
            zone=zone,
        )
        return str(output.contents or "")

    async def get_vm(self, name: str, zone: str) -> VmInfo | None:
        """The VM's current state, or None if it does not exist (deleted or preempted)."""
        from google.api_core.exceptions import NotFound

        instances = (await self._get_clients()).instances

        def get() -> Any:
            try:
                return instances.get(project=self.project, zone=zone, instance=name)
            except NotFound:
                return None

        instance = await self._call(get, doing=f"get VM {name}", zone=zone)
        return None if instance is None else _vm_info(instance)

    async def list_labbatch_vms(self, zones: list[str]) -> list[VmInfo]:
        """Every VM labelled ``labbatch=true`` in these zones (to find orphans after a crash)."""
        instances = (await self._get_clients()).instances

        def list_zone(zone: str) -> list[VmInfo]:
            from google.cloud import compute_v1

            request = compute_v1.ListInstancesRequest(
                project=self.project, zone=zone, filter=f'labels.{LABBATCH_LABEL} = "true"'
            )
            pager = instances.list(request=request)
            return [_vm_info(i) for i in pager]

        found: list[VmInfo] = []
        for zone in zones:
            found += await self._call(
                partial(list_zone, zone), doing="list LabBatch VMs", zone=zone
            )
        return found

    async def machine_types(self, zone: str) -> list[MachineType]:
        """The machine types a zone offers, sorted by name (asked once per zone)."""
        if zone not in self._machine_types:
            client = (await self._get_clients()).machine_types

            def list_zone() -> list[MachineType]:
                return sorted(
                    (
                        MachineType(m.name, m.guest_cpus, m.memory_mb)
                        for m in client.list(project=self.project, zone=zone)
                    ),
                    key=lambda m: m.name,
                )

            self._machine_types[zone] = await self._call(
                list_zone, doing="list machine types", zone=zone
            )
        return list(self._machine_types[zone])

    def close(self) -> None:
        """Close the SDK clients' HTTP sessions (they are made again if used after)."""
        clients, self._clients = self._clients, None
        if clients is not None:
            for client in (
                clients.instances,
                clients.zone_operations,
                clients.global_operations,
                clients.machine_types,
                clients.firewalls,
            ):
                client.transport.close()

    async def ensure_firewall(self, rule: FirewallRule) -> None:
        """Create the ingress rule if it is missing, patch it if its port or ranges differ."""
        from google.api_core.exceptions import Conflict

        for _ in range(2):  # a second round if another driver inserted it meanwhile
            try:
                existing = await self._get_firewall(rule)
            except _Unreadable as exc:
                log.warning(
                    "may not read the firewall rule %s (%s); assuming it was made by hand",
                    rule.name,
                    exc,
                )
                return
            if existing is None:
                body, action = firewall_body(rule), "create"
            elif not same_network(existing, rule):
                raise wrong_network_error(rule, self.project, existing.get("network", ""))
            elif (changes := patch_body(existing, rule)) is not None:
                body, action = changes, "update"
            else:
                return
            try:
                await self._write_firewall(rule, body, action=action)
            except Conflict:
                continue
            log.info("%sd firewall rule %s (tcp:%s)", action, rule.name, rule.port)
            return
        raise CloudError(
            f"the firewall rule {rule.name} in project {self.project} keeps changing under "
            "LabBatch; LabBatch will try again",
            transient=True,
        )

    async def _get_firewall(self, rule: FirewallRule) -> dict[str, Any] | None:
        """The rule as REST JSON, None if it does not exist; _Unreadable if we may not look."""
        from google.api_core.exceptions import Forbidden, NotFound
        from google.cloud import compute_v1

        firewalls = (await self._get_clients()).firewalls
        doing = f"check the firewall rule {rule.name}"
        try:
            found = await asyncio.to_thread(
                lambda: firewalls.get(project=self.project, firewall=rule.name)
            )
        except NotFound:
            return None
        except Forbidden as exc:
            if (error := translate(exc, doing=doing)).transient:
                raise error from exc  # a 403 that is a rate limit, not a permission
            raise _Unreadable(exc.message) from exc
        except cloud_failures() as exc:
            raise translate(exc, doing=doing) from exc
        existing: dict[str, Any] = json.loads(compute_v1.Firewall.to_json(found))
        return existing

    async def _write_firewall(
        self, rule: FirewallRule, body: dict[str, Any], *, action: str
    ) -> None:
        """Insert (``create``) or patch (``update``) the rule and wait for the operation;
        google's Conflict passes through (someone else inserted it first)."""
        from google.api_core.exceptions import Conflict, Forbidden
        from google.cloud import compute_v1

        firewalls = (await self._get_clients()).firewalls
        resource = compute_v1.Firewall.from_json(json.dumps(body))
        if action == "create":
            call = partial(firewalls.insert_unary, project=self.project, firewall_resource=resource)
        else:
            call = partial(
                firewalls.patch_unary,
                project=self.project,
                firewall=rule.name,
                firewall_resource=resource,
            )
        doing = f"{action} the firewall rule {rule.name}"
        try:
            op = await asyncio.to_thread(call)
        except Conflict:
            raise
        except Forbidden as exc:
            if (error := translate(exc, doing=doing)).transient:
                raise error from exc  # quota or rate limit, not a permission
            raise forbidden_error(rule, self.project, doing=action, detail=exc.message) from exc
        except cloud_failures() as exc:
            raise translate(exc, doing=doing) from exc
        await self._wait(op, doing=doing, zone=None)


class _Unreadable(Exception):
    """The credentials may not read a firewall rule (it may have been made by hand)."""
