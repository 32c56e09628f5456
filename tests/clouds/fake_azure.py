"""A fake Azure Resource Manager on 127.0.0.1 for the real SDK client: virtual machines, the
network interfaces and public IPs they make, network security groups. With ``vm_root`` set, a
created VM boots: its custom data runs in a FakeVm (a real worker on 127.0.0.1).

By default the fake behaves like Azure on a bad day (``realistic``): a VM's custom data runs
only after a random boot delay, every ``flaky_every``-th call answers 503, never the same call
twice in a row (the SDK's retry policy repeats it; a VM PUT is idempotent by name), and every
``failing_create_every``-th create operation ends Failed late (AllocationFailed).
``FakeAzure.kind()`` is the well-behaved fake, for the tests that say why they need it."""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.clouds.fake_vm import FakeVm
from tests.http_helpers import serve_app

VM_PATH = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"
)
VM_LIST_PATH = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines"
)
OP_PATH = "/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations/{op}"
BOOT_DIAGNOSTICS_PATH = VM_PATH + "/retrieveBootDiagnosticsData"
SERIAL_LOG_PATH = "/fake-boot-diagnostics/{rg}/{name}/serial.log"
FIRMWARE_LINES = "Hyper-V UEFI firmware (fake)\nBooting from the OS disk...\n"
VM_SIZES_PATH = "/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/vmSizes"
NETWORK_PATH = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"
NSG_PATH = NETWORK_PATH + "/networkSecurityGroups/{name}"
NIC_PATH = NETWORK_PATH + "/networkInterfaces/{name}"
PUBLIC_IP_PATH = NETWORK_PATH + "/publicIPAddresses/{name}"
FAKE_IP = "127.0.0.1"
# (name, cores, memory MB) of the sizes every location of the fake offers
VM_SIZES: tuple[tuple[str, int, int], ...] = (
    ("Standard_B2s", 2, 4096),
    ("Standard_D2s_v3", 2, 8192),
    ("Standard_D2s_v5", 2, 8192),
    ("Standard_E2s_v5", 2, 16384),
    ("Standard_D4s_v3", 4, 16384),
    ("Standard_D4s_v5", 4, 16384),
    ("Standard_D4as_v5", 4, 16384),
    ("Standard_E4s_v5", 4, 32768),
    ("Standard_F4s_v2", 4, 8192),
    ("Standard_D8s_v5", 8, 32768),
    ("Standard_E8s_v5", 8, 65536),
    ("Standard_D16s_v5", 16, 65536),
    ("Standard_F16s_v2", 16, 32768),
)


@dataclass
class _Failure:
    status: int
    code: str
    message: str


@dataclass
class _Operation:
    """An Azure-AsyncOperation: InProgress on the first poll, then Succeeded."""

    vm_key: tuple[str, str]
    kind: str  # "create" or "delete"
    polls: int = 0
    failure: _Failure | None = None


@dataclass
class FakeAzure:
    """State and switches of the fake; `app` answers the ARM REST calls.

    With ``vm_root`` set, each created VM runs its decoded custom data in a FakeVm under that
    directory; deleting or evicting the VM, or stopping the server, powers it off."""

    vm_root: Path | None = None
    realistic: bool = True
    boot_delay_s: tuple[float, float] = (0.5, 2.0)  # before a VM's custom data runs
    flaky_every: int = 7  # every n-th call answers 503 (0: never)
    failing_create_every: int = 5  # every n-th create operation ends Failed (0: never)
    never_boot: set[str] = field(default_factory=set)  # VMs whose custom data never runs
    never_boot_next: int = 0
    vms: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    put_bodies: list[dict[str, Any]] = field(default_factory=list)
    operation_polls: int = 0
    auth_fails: bool = False
    nsg_write_forbidden: bool = False
    nsgs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    nsg_put_bodies: list[dict[str, Any]] = field(default_factory=list)
    nics: dict[str, dict[str, Any]] = field(default_factory=dict)  # by ARM id (lower case)
    public_ips: dict[str, dict[str, Any]] = field(default_factory=dict)  # by ARM id (lower case)
    vm_sizes: tuple[tuple[str, int, int], ...] = VM_SIZES
    vm_size_lists: int = 0  # GETs of the vmSizes list
    _next_put_failure: _Failure | None = None
    _next_operation_failure: _Failure | None = None
    _operations: dict[str, _Operation] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _boots: dict[tuple[str, str], asyncio.Task[FakeVm]] = field(default_factory=dict)
    _stops: set[asyncio.Task[None]] = field(default_factory=set)
    _calls: int = 0
    _just_failed: set[tuple[str, str]] = field(default_factory=set)  # (method, path)
    _creates: int = 0

    @classmethod
    def kind(cls, **kwargs: Any) -> FakeAzure:
        """A fake without boot delays or flaky calls."""
        return cls(realistic=False, **kwargs)

    def __post_init__(self) -> None:
        if not self.realistic:
            self.boot_delay_s, self.flaky_every, self.failing_create_every = (0.0, 0.0), 0, 0

    def fail_next_put(self, status: int, code: str, message: str) -> None:
        """Make the next VM PUT answer this ARM error."""
        self._next_put_failure = _Failure(status, code, message)

    def fail_next_operation(self, code: str, message: str) -> None:
        """Make the next create's async operation end Failed with this ARM error."""
        self._next_operation_failure = _Failure(200, code, message)

    def fail_next_put_with_quota(self) -> None:
        """Make the next VM PUT exceed the standardDSv3Family cores quota."""
        self.fail_next_put(
            409,
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved "
            "standardDSv3Family Cores quota. Additional details - Deployment Model: Resource "
            "Manager, Location: westeurope, Current Limit: 10, Current Usage: 8, Additional "
            "Required: 4, (Minimum) New Limit Required: 12.",
        )

    def evict(self, rg: str, name: str, *, deallocate: bool = False) -> None:
        """Evict a spot VM: it disappears (policy Delete) or is deallocated; either way its
        fake VM powers off."""
        if deallocate:
            self.vms[(rg, name)]["_power"] = "deallocated"
        else:
            self._remove_vm((rg, name))
        self._power_off((rg, name))

    def booted(self, rg: str, name: str) -> asyncio.Task[FakeVm] | None:
        """The boot of a VM's FakeVm (await it for the FakeVm), None if it has none."""
        return self._boots.get((rg, name))

    async def stop_vms(self) -> None:
        """Power off every fake VM and wait until they are off."""
        for key in list(self._boots):
            self._power_off(key)
        while self._stops:
            await asyncio.gather(*list(self._stops), return_exceptions=True)

    def app(self) -> web.Application:
        """The aiohttp application serving this fake."""
        app = web.Application(middlewares=[self._auth])
        app.router.add_put(VM_PATH, self._put_vm)
        app.router.add_get(VM_PATH, self._get_vm)
        app.router.add_delete(VM_PATH, self._delete_vm)
        app.router.add_get(VM_LIST_PATH, self._list_vms)
        app.router.add_get(OP_PATH, self._get_operation)
        app.router.add_get(VM_SIZES_PATH, self._list_vm_sizes)
        app.router.add_post(BOOT_DIAGNOSTICS_PATH, self._boot_diagnostics)
        app.router.add_get(SERIAL_LOG_PATH, self._serial_log)
        app.router.add_put(NSG_PATH, self._put_nsg)
        app.router.add_get(NSG_PATH, self._get_nsg)
        app.router.add_get(NIC_PATH, self._get_network_resource)
        app.router.add_get(PUBLIC_IP_PATH, self._get_network_resource)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/fake-boot-diagnostics/"):  # a SAS URL: no bearer token
            return await handler(request)
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "AuthenticationFailed", "Authentication failed.")
        if self.auth_fails:
            return _error(
                401, "InvalidAuthenticationToken", "The access token is invalid or expired."
            )
        self._calls += 1
        call = (request.method, request.path)
        flaky = bool(self.flaky_every) and self._calls % self.flaky_every == 0
        if flaky and call not in self._just_failed:  # a retry after a 503 gets through
            self._just_failed.add(call)
            return _error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        self._just_failed.discard(call)
        response: web.StreamResponse = await handler(request)
        return response

    async def _boot_diagnostics(self, request: web.Request) -> web.Response:
        rg, name = request.match_info["rg"], request.match_info["name"]
        if (rg, name) not in self.vms:
            return _not_found("Microsoft.Compute/virtualMachines", name)
        url = f"http://{request.host}{SERIAL_LOG_PATH.format(rg=rg, name=name)}?sig=fake"
        return web.json_response(
            {
                "consoleScreenshotBlobUri": url.replace("serial.log", "screen.bmp"),
                "serialConsoleLogBlobUri": url,
            }
        )

    async def _serial_log(self, request: web.Request) -> web.Response:
        key = (request.match_info["rg"], request.match_info["name"])
        boot = self._boots.get(key)
        console = ""
        if boot is not None and boot.done() and not boot.cancelled():
            console = boot.result().console()
        return web.Response(text=FIRMWARE_LINES + console)

    def _start_operation(self, request: web.Request, kind: str) -> str:
        op_id = f"op-{next(self._ids)}"
        key = (request.match_info["rg"], request.match_info["name"])
        failure, self._next_operation_failure = self._next_operation_failure, None
        if kind == "create":
            self._creates += 1
            every = self.failing_create_every
            if failure is None and every and self._creates % every == 0:
                failure = _Failure(
                    200,
                    "AllocationFailed",
                    "Allocation failed. We do not have sufficient capacity for the requested VM "
                    "size in this region.",
                )
        self._operations[op_id] = _Operation(key, kind, failure=failure)
        path = OP_PATH.format(sub=request.match_info["sub"], loc="westeurope", op=op_id)
        return f"http://{request.host}{path}?api-version={request.query['api-version']}"

    async def _put_vm(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.put_bodies.append(body)
        if self._next_put_failure is not None:
            failure, self._next_put_failure = self._next_put_failure, None
            return _error(failure.status, failure.code, failure.message)
        vm_size = body.get("properties", {}).get("hardwareProfile", {}).get("vmSize")
        if vm_size not in {name for name, _, _ in self.vm_sizes}:
            return self._unknown_size(vm_size)
        sub, rg, name = (request.match_info[k] for k in ("sub", "rg", "name"))
        vm = copy.deepcopy(body)
        vm.update(
            id=request.path,
            name=name,
            type="Microsoft.Compute/virtualMachines",
            _power="running",
        )
        vm["properties"]["provisioningState"] = "Creating"
        vm["properties"]["vmId"] = f"vm-{next(self._ids)}"
        vm["_made"] = self._make_network(sub, rg, vm)
        self.vms[(rg, name)] = vm
        self._boot((rg, name), vm)
        headers = {"Azure-AsyncOperation": self._start_operation(request, "create")}
        return web.json_response(_public(vm), status=201, headers=headers)

    def _unknown_size(self, vm_size: str | None) -> web.Response:
        """ARM's answer to a VM size the location does not offer (it lists all of them)."""
        sizes = ",".join(name for name, _, _ in self.vm_sizes)
        message = (
            f"The requested VM size {vm_size} is not available in the current region. The sizes "
            f"available in the current region are: {sizes}.\r\nFind out more on the available "
            "VM sizes in each region at https://aka.ms/azure-regions."
        )
        error = {"code": "InvalidParameter", "message": message, "target": "vmSize"}
        return web.json_response({"error": error}, status=400)

    async def _list_vm_sizes(self, request: web.Request) -> web.Response:
        self.vm_size_lists += 1
        value = [
            {
                "name": name,
                "numberOfCores": cores,
                "osDiskSizeInMB": 1047552,
                "resourceDiskSizeInMB": 0,
                "memoryInMB": memory_mb,
                "maxDataDiskCount": 8 if cores < 8 else 16,
            }
            for name, cores, memory_mb in self.vm_sizes
        ]
        return web.json_response({"value": value})

    def _make_network(self, sub: str, rg: str, vm: dict[str, Any]) -> list[str]:
        """Create the NICs (and public IPs) of the VM's inline network interface
        configurations, as Azure does; list the ids made."""
        network = vm["properties"].get("networkProfile") or {}
        made: list[str] = []
        refs: list[dict[str, Any]] = []
        for config in network.get("networkInterfaceConfigurations") or []:
            nic_id = NIC_PATH.format(sub=sub, rg=rg, name=config["name"])
            ip_configs = []
            for ip_config in config["properties"].get("ipConfigurations") or []:
                props = ip_config.get("properties") or {}
                shown: dict[str, Any] = {
                    "privateIPAddress": FAKE_IP,
                    "privateIPAllocationMethod": "Dynamic",
                    "subnet": props.get("subnet"),
                    "primary": props.get("primary", True),
                    "provisioningState": "Succeeded",
                }
                public = props.get("publicIPAddressConfiguration")
                if public is not None:
                    ip_id = PUBLIC_IP_PATH.format(sub=sub, rg=rg, name=public["name"])
                    self.public_ips[ip_id.lower()] = {
                        "id": ip_id,
                        "name": public["name"],
                        "location": vm["location"],
                        "sku": public.get("sku"),
                        "properties": {
                            "provisioningState": "Succeeded",
                            "ipAddress": FAKE_IP,
                            "publicIPAddressVersion": "IPv4",
                            "publicIPAllocationMethod": public["properties"][
                                "publicIPAllocationMethod"
                            ],
                        },
                    }
                    made.append(ip_id)
                    shown["publicIPAddress"] = {"id": ip_id}
                ip_configs.append({"name": ip_config["name"], "properties": shown})
            self.nics[nic_id.lower()] = {
                "id": nic_id,
                "name": config["name"],
                "location": vm["location"],
                "properties": {
                    "provisioningState": "Succeeded",
                    "primary": config["properties"].get("primary", True),
                    "ipConfigurations": ip_configs,
                    "networkSecurityGroup": config["properties"].get("networkSecurityGroup"),
                },
            }
            made.append(nic_id)
            refs.append({"id": nic_id, "properties": {"primary": True, "deleteOption": "Delete"}})
        if refs:
            network["networkInterfaces"] = refs
        return made

    def _boot(self, key: tuple[str, str], vm: dict[str, Any]) -> None:
        custom_data = vm["properties"].get("osProfile", {}).get("customData")
        if self.vm_root is None or not custom_data or key in self._boots:
            return
        script = base64.b64decode(custom_data).decode()
        never = key[1] in self.never_boot or self.never_boot_next > 0
        if never:
            self.never_boot.add(key[1])
            self.never_boot_next = max(0, self.never_boot_next - 1)
        delay_s = random.uniform(*self.boot_delay_s)
        root = self.vm_root

        async def boot() -> FakeVm:
            await asyncio.sleep(delay_s)
            if never:
                await asyncio.Event().wait()  # stuck: the worker never starts
            return await FakeVm.boot(key[1], script, root)

        self._boots[key] = asyncio.ensure_future(boot())

    def _power_off(self, key: tuple[str, str]) -> None:
        boot = self._boots.pop(key, None)
        if boot is None:
            return

        async def stop() -> None:
            if not boot.done():
                boot.cancel()  # powered off before its custom data ran
            try:
                vm = await boot
            except asyncio.CancelledError:
                return
            await vm.stop()

        task = asyncio.ensure_future(stop())
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    def _remove_vm(self, key: tuple[str, str]) -> None:
        vm = self.vms.pop(key, None)
        for resource_id in (vm or {}).get("_made", []):
            self.nics.pop(resource_id.lower(), None)
            self.public_ips.pop(resource_id.lower(), None)

    async def _get_vm(self, request: web.Request) -> web.Response:
        vm = self.vms.get((request.match_info["rg"], request.match_info["name"]))
        if vm is None:
            return _not_found("Microsoft.Compute/virtualMachines", request.match_info["name"])
        return web.json_response(
            _public(vm, instance_view=request.query.get("$expand") == "instanceView")
        )

    async def _delete_vm(self, request: web.Request) -> web.Response:
        if (request.match_info["rg"], request.match_info["name"]) not in self.vms:
            return web.Response(status=204)
        headers = {"Azure-AsyncOperation": self._start_operation(request, "delete")}
        return web.Response(status=202, headers=headers)

    async def _list_vms(self, request: web.Request) -> web.Response:
        rg = request.match_info["rg"]
        value = [_public(vm) for (vm_rg, _), vm in self.vms.items() if vm_rg == rg]
        return web.json_response({"value": value})

    async def _get_operation(self, request: web.Request) -> web.Response:
        self.operation_polls += 1
        op = self._operations[request.match_info["op"]]
        op.polls += 1
        if op.polls == 1:
            return web.json_response({"name": request.match_info["op"], "status": "InProgress"})
        if op.failure is not None:
            self.vms[op.vm_key]["properties"]["provisioningState"] = "Failed"
            error = {"code": op.failure.code, "message": op.failure.message}
            return web.json_response({"status": "Failed", "error": error})
        if op.kind == "create" and op.vm_key in self.vms:
            self.vms[op.vm_key]["properties"]["provisioningState"] = "Succeeded"
        elif op.kind == "delete":
            self._remove_vm(op.vm_key)
            self._power_off(op.vm_key)
        return web.json_response({"name": request.match_info["op"], "status": "Succeeded"})

    async def _put_nsg(self, request: web.Request) -> web.Response:
        """Create or replace an NSG; it reads "Updating" until the next GET (as ARM may)."""
        body = await request.json()
        self.nsg_put_bodies.append(body)
        name = request.match_info["name"]
        if self.nsg_write_forbidden:
            return _error(
                403,
                "AuthorizationFailed",
                "The client 'ana@example.com' with object id '0000' does not have "
                "authorization to perform action 'Microsoft.Network/networkSecurityGroups/write' "
                f"over scope '{request.path}' or the scope is invalid.",
            )
        key = (request.match_info["rg"], name)
        created = key not in self.nsgs
        rules = [
            {**rule, "id": f"{request.path}/securityRules/{rule['name']}"}
            for rule in body.get("properties", {}).get("securityRules", [])
        ]
        for rule in rules:
            rule["properties"] = {**rule["properties"], "provisioningState": "Updating"}
        nsg = {
            "id": request.path,
            "name": name,
            "type": "Microsoft.Network/networkSecurityGroups",
            "location": body["location"],
            "tags": body.get("tags", {}),
            "properties": {
                "provisioningState": "Updating",
                "securityRules": rules,
                "defaultSecurityRules": [],
            },
        }
        self.nsgs[key] = nsg
        return web.json_response(nsg, status=201 if created else 200)

    async def _get_nsg(self, request: web.Request) -> web.Response:
        nsg = self.nsgs.get((request.match_info["rg"], request.match_info["name"]))
        if nsg is None:
            return _not_found("Microsoft.Network/networkSecurityGroups", request.match_info["name"])
        nsg["properties"]["provisioningState"] = "Succeeded"
        for rule in nsg["properties"]["securityRules"]:
            rule["properties"]["provisioningState"] = "Succeeded"
        return web.json_response(nsg)

    async def _get_network_resource(self, request: web.Request) -> web.Response:
        found = self.nics.get(request.path.lower()) or self.public_ips.get(request.path.lower())
        if found is None:
            kind = request.path.split("/providers/")[-1].rsplit("/", 1)[0]
            return _not_found(kind, request.match_info["name"])
        return web.json_response(found)


def _public(vm: dict[str, Any], *, instance_view: bool = False) -> dict[str, Any]:
    """The VM as ARM shows it, without the fake's private fields."""
    shown = {key: value for key, value in vm.items() if not key.startswith("_")}
    shown["properties"] = dict(vm["properties"])
    if instance_view:
        provisioning = vm["properties"]["provisioningState"].lower()
        shown["properties"]["instanceView"] = {
            "statuses": [
                {"code": f"ProvisioningState/{provisioning}", "level": "Info"},
                {"code": f"PowerState/{vm['_power']}", "level": "Info"},
            ]
        }
    return shown


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _not_found(kind: str, name: str) -> web.Response:
    return _error(
        404, "ResourceNotFound", f"The Resource '{kind}/{name}' under resource group was not found."
    )


@asynccontextmanager
async def serve(state: FakeAzure) -> AsyncIterator[str]:
    """Run the fake on a free port of 127.0.0.1; yields its base URL. Stopping it powers off
    every fake VM."""
    async with serve_app(state.app()) as base_url:
        try:
            yield base_url
        finally:
            await state.stop_vms()
