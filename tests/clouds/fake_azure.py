"""A fake Azure Resource Manager (virtual machines only) on 127.0.0.1 for the real SDK client."""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy

VM_PATH = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"
)
VM_LIST_PATH = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines"
)
OP_PATH = "/subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/operations/{op}"


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
    """State and switches of the fake; `app` answers the ARM VM REST calls."""

    vms: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    put_bodies: list[dict[str, Any]] = field(default_factory=list)
    operation_polls: int = 0
    auth_fails: bool = False
    _next_put_failure: _Failure | None = None
    _next_operation_failure: _Failure | None = None
    _operations: dict[str, _Operation] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

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
        """Evict a spot VM: it disappears (policy Delete) or is deallocated."""
        if deallocate:
            self.vms[(rg, name)]["_power"] = "deallocated"
        else:
            del self.vms[(rg, name)]

    def app(self) -> web.Application:
        """The aiohttp application serving this fake."""
        app = web.Application(middlewares=[self._auth])
        app.router.add_put(VM_PATH, self._put_vm)
        app.router.add_get(VM_PATH, self._get_vm)
        app.router.add_delete(VM_PATH, self._delete_vm)
        app.router.add_get(VM_LIST_PATH, self._list_vms)
        app.router.add_get(OP_PATH, self._get_operation)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(401, "AuthenticationFailed", "Authentication failed.")
        if self.auth_fails:
            return _error(
                401, "InvalidAuthenticationToken", "The access token is invalid or expired."
            )
        response: web.StreamResponse = await handler(request)
        return response

    def _start_operation(self, request: web.Request, kind: str) -> str:
        op_id = f"op-{next(self._ids)}"
        key = (request.match_info["rg"], request.match_info["name"])
        failure, self._next_operation_failure = self._next_operation_failure, None
        self._operations[op_id] = _Operation(key, kind, failure=failure)
        path = OP_PATH.format(sub=request.match_info["sub"], loc="westeurope", op=op_id)
        return f"http://{request.host}{path}?api-version={request.query['api-version']}"

    async def _put_vm(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.put_bodies.append(body)
        if self._next_put_failure is not None:
            failure, self._next_put_failure = self._next_put_failure, None
            return _error(failure.status, failure.code, failure.message)
        rg, name = request.match_info["rg"], request.match_info["name"]
        vm = copy.deepcopy(body)
        vm.update(
            id=request.path,
            name=name,
            type="Microsoft.Compute/virtualMachines",
            _power="running",
        )
        vm["properties"]["provisioningState"] = "Creating"
        vm["properties"]["vmId"] = f"vm-{next(self._ids)}"
        self.vms[(rg, name)] = vm
        headers = {"Azure-AsyncOperation": self._start_operation(request, "create")}
        return web.json_response(_public(vm), status=201, headers=headers)

    async def _get_vm(self, request: web.Request) -> web.Response:
        vm = self.vms.get((request.match_info["rg"], request.match_info["name"]))
        if vm is None:
            return _not_found(request.match_info["name"])
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
            self.vms.pop(op.vm_key, None)
        return web.json_response({"name": request.match_info["op"], "status": "Succeeded"})


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


def _not_found(name: str) -> web.Response:
    return _error(
        404,
        "ResourceNotFound",
        f"The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group was "
        "not found.",
    )


class StaticCredential:
    """An async TokenCredential handing out a dummy token."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("dummy-token", int(time.time()) + 3600)

    async def close(self) -> None:
        pass


class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Lets bearer auth go over http to the fake on 127.0.0.1."""

    def on_request(self, request: Any) -> None:
        request.context["enforce_https"] = False


@asynccontextmanager
async def serve(state: FakeAzure) -> AsyncIterator[str]:
    """Run the fake on a free port of 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(state.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
