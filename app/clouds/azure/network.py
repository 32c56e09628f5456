"""The network side of Azure workers, without azure-mgmt-network: the pool's network security
group and the address of a VM's network interface, read and written as Microsoft.Network REST
through the compute client's own pipeline (its credential, retries and base URL)."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.clouds.azure.errors import translate_error
from app.errors import CloudError

NETWORK_API_VERSION = "2023-09-01"
WORKER_RULE = "labbatch-worker"
WORKER_RULE_PRIORITY = 1000
PROVISION_TIMEOUT_S = 300.0


def nsg_name(pool: str) -> str:
    """The name of the network security group of a pool's workers."""
    return f"labbatch-{pool}-worker"


def nsg_id(subscription_id: str, resource_group: str, name: str) -> str:
    """The ARM id of a network security group."""
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.Network/networkSecurityGroups/{name}"
    )


@dataclass(frozen=True, slots=True)
class WorkerNsg:
    """The NSG of one pool: inbound TCP to the worker port from these sources only."""

    subscription_id: str
    resource_group: str
    location: str
    pool: str
    port: int
    sources: tuple[str, ...]  # CIDRs

    @property
    def name(self) -> str:
        return nsg_name(self.pool)

    @property
    def id(self) -> str:
        return nsg_id(self.subscription_id, self.resource_group, self.name)

    def rule(self) -> dict[str, Any]:
        """The security rule letting the driver reach the worker."""
        return {
            "name": WORKER_RULE,
            "properties": {
                "description": "LabBatch driver to worker (https/wss)",
                "protocol": "Tcp",
                "access": "Allow",
                "direction": "Inbound",
                "priority": WORKER_RULE_PRIORITY,
                "sourcePortRange": "*",
                "sourceAddressPrefixes": list(self.sources),
                "destinationPortRange": str(self.port),
                "destinationAddressPrefix": "*",
            },
        }

    def body(self, existing: dict[str, Any] | None) -> dict[str, Any]:
        """The PUT body: the existing NSG's other rules kept, ours added or replaced."""
        old_props = (existing or {}).get("properties") or {}
        others = [r for r in old_props.get("securityRules") or [] if r.get("name") != WORKER_RULE]
        tags = {
            **((existing or {}).get("tags") or {}),
            "labbatch": "true",
            "labbatch-pool": self.pool,
        }
        return {
            "location": self.location,
            "tags": tags,
            "properties": {"securityRules": [*others, self.rule()]},
        }

    def is_met_by(self, existing: dict[str, Any] | None) -> bool:
        """True when ``existing`` is provisioned with exactly our rule."""
        props = (existing or {}).get("properties") or {}
        if props.get("provisioningState") != "Succeeded":
            return False
        want = self.rule()["properties"]
        for rule in props.get("securityRules") or []:
            if rule.get("name") != WORKER_RULE:
                continue
            have = rule.get("properties") or {}
            sources = have.get("sourceAddressPrefixes") or [have.get("sourceAddressPrefix")]
            return (
                all(have.get(k) == want[k] for k in ("protocol", "access", "direction"))
                and str(have.get("destinationPortRange")) == want["destinationPortRange"]
                and sorted(map(_normalised, sources)) == sorted(self.sources)
            )
        return False

    def forbidden_hint(self) -> str:
        """What to do when the identity may not write the NSG: a role, or one manual set-up."""
        return (
            f"Grant the signed-in identity the Network Contributor role on resource group "
            f"{self.resource_group}, or have someone who holds it create the network security "
            "group once (LabBatch then only reads it): "
            f"`az network nsg create -g {self.resource_group} -n {self.name} -l {self.location} "
            f"&& az network nsg rule create -g {self.resource_group} --nsg-name {self.name} "
            f"-n {WORKER_RULE} --priority {WORKER_RULE_PRIORITY} --direction Inbound "
            f"--access Allow --protocol Tcp --destination-port-ranges {self.port} "
            f"--source-address-prefixes {' '.join(self.sources)}`."
        )


class ArmRest:
    """GET and PUT of Microsoft.Network resources through an azure-mgmt client's pipeline."""

    def __init__(self, client: Any, *, poll_interval_s: float) -> None:
        self._client = client
        self.poll_interval_s = poll_interval_s

    async def _send(self, method: str, resource_id: str, body: Any = None) -> Any:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            map_error,
        )
        from azure.core.rest import HttpRequest
        from azure.mgmt.core.exceptions import ARMErrorFormat

        request = HttpRequest(
            method, resource_id, params={"api-version": NETWORK_API_VERSION}, json=body
        )
        response = await self._client.send_request(request)
        if response.status_code >= 400:
            error_map = {401: ClientAuthenticationError, 404: ResourceNotFoundError}
            map_error(status_code=response.status_code, response=response, error_map=error_map)
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        return response.json() if response.content else {}

    async def get(self, resource_id: str) -> dict[str, Any] | None:
        """The resource's JSON, or None when it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found: dict[str, Any] = await self._send("GET", resource_id)
        except ResourceNotFoundError:
            return None
        return found

    async def put(self, resource_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace the resource; its JSON as ARM answered."""
        answer: dict[str, Any] = await self._send("PUT", resource_id, body)
        return answer


async def ensure_worker_nsg(
    rest: ArmRest, nsg: WorkerNsg, *, timeout_s: float = PROVISION_TIMEOUT_S
) -> None:
    """Make the pool's NSG allow exactly ``nsg.sources`` to the worker port; wait until
    Azure has provisioned it. Leaves an NSG that already does so untouched."""
    from azure.core.exceptions import AzureError

    hint = nsg.forbidden_hint()
    try:
        existing = await rest.get(nsg.id)
        if nsg.is_met_by(existing):
            return
        answer = await rest.put(nsg.id, nsg.body(existing))
        deadline = time.monotonic() + timeout_s
        while _state(answer) != "Succeeded":
            if _state(answer) in ("Failed", "Canceled"):
                raise CloudError(
                    f"Azure could not provision network security group {nsg.name}: "
                    f"provisioningState {_state(answer)}."
                )
            if time.monotonic() > deadline:
                raise CloudError(
                    f"Network security group {nsg.name} was not provisioned within "
                    f"{timeout_s:g} s; will retry.",
                    transient=True,
                )
            await asyncio.sleep(rest.poll_interval_s)
            answer = await rest.get(nsg.id) or {}
    except AzureError as exc:
        action = f"writing network security group {nsg.name} in {nsg.resource_group}"
        raise translate_error(exc, action, forbidden_hint=hint) from exc


async def nic_address(
    rest: ArmRest, nic_id: str, *, public: bool, timeout_s: float = PROVISION_TIMEOUT_S
) -> str:
    """The public (or private) IP address of a network interface, once Azure has assigned it."""
    from azure.core.exceptions import AzureError

    deadline = time.monotonic() + timeout_s
    try:
        while True:
            address = await _read_address(rest, nic_id, public=public)
            if address:
                return address
            if time.monotonic() > deadline:
                kind = "public" if public else "private"
                raise CloudError(
                    f"Azure assigned no {kind} IP address to {nic_id} within {timeout_s:g} s.",
                    transient=True,
                )
            await asyncio.sleep(rest.poll_interval_s)
    except AzureError as exc:
        raise translate_error(exc, f"reading the address of {nic_id}") from exc


async def _read_address(rest: ArmRest, nic_id: str, *, public: bool) -> str | None:
    nic = await rest.get(nic_id)
    configs: Sequence[dict[str, Any]] = ((nic or {}).get("properties") or {}).get(
        "ipConfigurations"
    ) or []
    config = next((c for c in configs if (c.get("properties") or {}).get("primary")), None)
    props = ((config or (configs[0] if configs else {})).get("properties")) or {}
    if not public:
        private: str | None = props.get("privateIPAddress")
        return private
    public_ip_id = (props.get("publicIPAddress") or {}).get("id")
    if not public_ip_id:
        return None
    public_ip = await rest.get(public_ip_id)
    address: str | None = ((public_ip or {}).get("properties") or {}).get("ipAddress")
    return address


def _normalised(prefix: object) -> str:
    """A source prefix as the pool config writes it ("203.0.113.7" -> "203.0.113.7/32")."""
    try:
        return str(ipaddress.ip_network(str(prefix), strict=False))
    except ValueError:  # a service tag such as "Internet": never one of ours
        return str(prefix)


def _state(resource: dict[str, Any]) -> str | None:
    state: str | None = (resource.get("properties") or {}).get("provisioningState")
    return state
