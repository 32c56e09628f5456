"""Azure resource manager: create, delete, get and list LabBatch VMs with the async SDK client."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.clouds.azure.errors import translate_error
from app.clouds.azure.network import ArmRest, WorkerNsg, ensure_worker_nsg, nic_address

LABBATCH_TAG = "labbatch"
POOL_TAG = "labbatch-pool"
INSTANCE_TAG = "labbatch-instance"
DEFAULT_POLLING_INTERVAL_S = 5.0
# Microsoft.Network version for the NICs a VM makes (2020-11-01 or later allows inline ones)
NETWORK_PROFILE_API_VERSION = "2022-11-01"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A Marketplace image; the default is Debian 12 (gen 2)."""

    publisher: str = "Debian"
    offer: str = "debian-12"
    sku: str = "12-gen2"
    version: str = "latest"


@dataclass(frozen=True, slots=True)
class VmSpec:
    """One Linux VM to create, with its own network interface (and public IP) in a subnet."""

    name: str
    vm_size: str
    subnet_id: str
    nsg_id: str
    pool: str
    public_ip: bool = True  # False: the driver dials the private address (VPN)
    image: ImageRef = ImageRef()
    os_disk_size_gb: int = 30
    admin_username: str = "labbatch"
    ssh_public_key: str | None = None  # Azure needs one: password login is disabled
    custom_data: str = ""
    spot: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # custom data holds the token and the TLS key
        return f"VmSpec(name={self.name!r}, vm_size={self.vm_size!r}, pool={self.pool!r})"


@dataclass(frozen=True, slots=True)
class VmInfo:
    """What Azure reports about a VM."""

    name: str
    location: str
    provisioning_state: str | None
    power_state: str | None  # "running", "deallocated", ...; None when not asked or unknown
    tags: dict[str, str]
    nic_id: str | None = None  # the primary network interface


def vm_tags(spec: VmSpec) -> dict[str, str]:
    """The caller's tags plus the ones marking the VM as LabBatch's."""
    return {**spec.tags, LABBATCH_TAG: "true", POOL_TAG: spec.pool, INSTANCE_TAG: spec.name}


def vm_body(spec: VmSpec, location: str) -> dict[str, Any]:
    """The ARM JSON body of a VM PUT for this spec."""
    linux: dict[str, Any] = {"disablePasswordAuthentication": True}
    if spec.ssh_public_key:
        path = f"/home/{spec.admin_username}/.ssh/authorized_keys"
        linux["ssh"] = {"publicKeys": [{"path": path, "keyData": spec.ssh_public_key}]}
    os_profile: dict[str, Any] = {
        "computerName": spec.name,
        "adminUsername": spec.admin_username,
        "linuxConfiguration": linux,
    }
    if spec.custom_data:
        os_profile["customData"] = base64.b64encode(spec.custom_data.encode()).decode("ascii")
    properties: dict[str, Any] = {
        "hardwareProfile": {"vmSize": spec.vm_size},
        "storageProfile": {
            "imageReference": {
                "publisher": spec.image.publisher,
                "offer": spec.image.offer,
                "sku": spec.image.sku,
                "version": spec.image.version,
            },
            "osDisk": {
                "createOption": "FromImage",
                "diskSizeGB": spec.os_disk_size_gb,
                "deleteOption": "Delete",
            },
        },
        "osProfile": os_profile,
        "networkProfile": network_profile(spec),
        # managed boot diagnostics: the serial log explains a VM whose worker never answers
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
    }
    if spec.spot:
        properties["priority"] = "Spot"
        properties["evictionPolicy"] = "Delete"
        properties["billingProfile"] = {"maxPrice": -1}  # pay up to the regular price
    return {"location": location, "tags": vm_tags(spec), "properties": properties}


def network_profile(spec: VmSpec) -> dict[str, Any]:
    """A network interface (and public IP) that the VM creates, and deletes with itself."""
    ip_config: dict[str, Any] = {"subnet": {"id": spec.subnet_id}, "primary": True}
    if spec.public_ip:
        ip_config["publicIPAddressConfiguration"] = {
            "name": f"{spec.name}-ip",
            "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {"deleteOption": "Delete", "publicIPAllocationMethod": "Static"},
        }
    return {
        "networkApiVersion": NETWORK_PROFILE_API_VERSION,
        "networkInterfaceConfigurations": [
            {
                "name": f"{spec.name}-nic",
                "properties": {
                    "primary": True,
                    "deleteOption": "Delete",
                    "networkSecurityGroup": {"id": spec.nsg_id},
                    "ipConfigurations": [{"name": "ipconfig1", "properties": ip_config}],
                },
            }
        ],
    }


def _primary_nic_id(props: Any) -> str | None:
    network = props.network_profile if props is not None else None
    nics = list(network.network_interfaces or []) if network is not None else []
    primary = [n for n in nics if n.properties is not None and n.properties.primary]
    chosen = (primary or nics)[:1]
    return str(chosen[0].id) if chosen and chosen[0].id else None


def _vm_info(vm: Any) -> VmInfo:
    """A VmInfo from an SDK VirtualMachine model."""
    props = vm.properties
    power_state = None
    instance_view = props.instance_view if props is not None else None
    for status in (instance_view.statuses or []) if instance_view is not None else []:
        if status.code and status.code.startswith("PowerState/"):
            power_state = status.code.removeprefix("PowerState/")
    return VmInfo(
        name=vm.name,
        location=vm.location,
        provisioning_state=props.provisioning_state if props is not None else None,
        power_state=power_state,
        tags=dict(vm.tags or {}),
        nic_id=_primary_nic_id(props),
    )


async def read_blob_text(sas_uri: str) -> str:
    """GET a blob through its SAS URL (the URL is the credential: never log it)."""
    import aiohttp

    from app.errors import CloudError

    timeout = aiohttp.ClientTimeout(total=20)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(sas_uri) as response,
        ):
            if response.status != 200:
                raise CloudError(f"Azure answered {response.status} for a boot log")
            return await response.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CloudError(f"could not read a boot log from Azure storage: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Sender:
    """Wraps a client's send_request so ArmRest sees one name across SDK versions."""

    send_request: Any


class AzureResources:
    """Creates, deletes and lists LabBatch VMs in one resource group through the async SDK."""

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        location: str,
        *,
        base_url: str | None = None,
        credential: Any = None,
        polling_interval_s: float = DEFAULT_POLLING_INTERVAL_S,
        per_call_policies: list[Any] | None = None,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.location = location
        self._base_url = base_url
        self._credential = credential
        self._owns_credential = credential is None
        self._polling_interval_s = polling_interval_s
        self._per_call_policies = list(per_call_policies or [])
        self._client: Any = None
        self._vm_sizes: list[tuple[str, int, int]] | None = None  # asked once; they rarely change

    def _compute(self) -> Any:
        """The SDK client, created on first use."""
        if self._client is None:
            from azure.mgmt.compute.aio import ComputeManagementClient

            if self._credential is None:
                from azure.identity.aio import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
            options: dict[str, Any] = {
                "polling_interval": self._polling_interval_s,
                "per_call_policies": self._per_call_policies,
            }
            if self._base_url is not None:
                options["base_url"] = self._base_url
            self._client = ComputeManagementClient(
                credential=self._credential, subscription_id=self.subscription_id, **options
            )
        return self._client

    def _vms(self) -> Any:
        """The SDK's virtual machines operations."""
        return self._compute().virtual_machines

    def _rest(self) -> ArmRest:
        """Microsoft.Network REST calls through the compute client's pipeline."""
        client = self._compute()
        send = getattr(client, "send_request", None) or client._send_request  # older SDKs
        return ArmRest(_Sender(send), poll_interval_s=self._polling_interval_s)

    async def ensure_worker_nsg(self, pool: str, port: int, sources: tuple[str, ...]) -> str:
        """Make the pool's network security group allow ``sources`` to ``port``; its id."""
        nsg = WorkerNsg(
            self.subscription_id, self.resource_group, self.location, pool, port, sources
        )
        await ensure_worker_nsg(self._rest(), nsg)
        return nsg.id

    async def vm_address(self, nic_id: str, *, public: bool) -> str:
        """The IP address of a VM's network interface: its public IP, or its private one."""
        return await nic_address(self._rest(), nic_id, public=public)

    async def create_vm(self, spec: VmSpec) -> VmInfo:
        """Create (PUT) a VM and wait until Azure reports it provisioned."""
        from azure.core.exceptions import AzureError

        action = f"creating VM {spec.name} ({spec.vm_size}) in {self.location}"
        try:
            poller = await self._vms().begin_create_or_update(
                self.resource_group, spec.name, vm_body(spec, self.location)
            )
            vm = await poller.result()
        except AzureError as exc:
            raise translate_error(exc, action) from exc
        return _vm_info(vm)

    async def delete_vm(self, name: str) -> None:
        """Delete a VM and wait for it to go; a VM already gone is fine."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            poller = await self._vms().begin_delete(self.resource_group, name)
            await poller.result()
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise translate_error(exc, f"deleting VM {name}") from exc

    async def get_vm(self, name: str) -> VmInfo | None:
        """The VM with its power state, or None when it does not exist (deleted or evicted)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            vm = await self._vms().get(self.resource_group, name, expand="instanceView")
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate_error(exc, f"reading VM {name}") from exc
        return _vm_info(vm)

    async def boot_log(self, name: str) -> str:
        """The VM's serial log from its boot diagnostics ("" when Azure has none yet)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            data = await self._vms().retrieve_boot_diagnostics_data(
                self.resource_group, name, sas_uri_expiration_time_in_minutes=5
            )
        except ResourceNotFoundError:
            return ""
        except AzureError as exc:
            raise translate_error(exc, f"reading the boot diagnostics of VM {name}") from exc
        uri = data.serial_console_log_blob_uri
        return await read_blob_text(uri) if uri else ""

    async def list_labbatch_vms(self) -> list[VmInfo]:
        """Every VM in the resource group tagged as LabBatch's (to find orphans)."""
        from azure.core.exceptions import AzureError

        found: list[VmInfo] = []
        try:
            async for vm in self._vms().list(self.resource_group):
                if (vm.tags or {}).get(LABBATCH_TAG) == "true":
                    found.append(_vm_info(vm))
        except AzureError as exc:
            raise translate_error(exc, f"listing VMs in {self.resource_group}") from exc
        return found

    async def vm_sizes(self) -> list[tuple[str, int, int]]:
        """(name, cores, memory MB) of every VM size the location offers, sorted by name."""
        from azure.core.exceptions import AzureError

        if self._vm_sizes is None:
            found: list[tuple[str, int, int]] = []
            try:
                async for size in self._compute().virtual_machine_sizes.list(self.location):
                    found.append((size.name, size.number_of_cores or 0, size.memory_in_mb or 0))
            except AzureError as exc:
                raise translate_error(exc, f"listing the VM sizes of {self.location}") from exc
            self._vm_sizes = sorted(found)
        return list(self._vm_sizes)

    async def close(self) -> None:
        """Close the HTTP session, and the credential if this object made it."""
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._owns_credential and self._credential is not None:
            await self._credential.close()
            self._credential = None
