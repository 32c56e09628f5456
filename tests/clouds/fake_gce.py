"""A fake Compute Engine REST API on 127.0.0.1 answering the documented JSON shapes.

With ``boot_dir`` set, an inserted instance boots a FakeVm that runs its real start-up script,
reading its metadata from a per-instance endpoint of this server (like the metadata server).

By default the fake behaves like the service on a bad day (``realistic``): a VM's start-up
script runs only after a random boot delay (its worker port refuses connections meanwhile),
every ``flaky_every``-th API call answers 503, never the same call twice in a row (an
insert's answer is lost after the VM was made: only its requestId keeps a retry from making a
second one), and every
``failing_insert_every``-th insert operation ends in error late. ``FakeGce.kind()`` is the
well-behaved fake, for the tests that say why they need it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.clouds.fake_vm import FakeVm
from tests.http_helpers import serve_app

BASE = "/compute/v1/projects/{project}/zones/{zone}"
GLOBAL = "/compute/v1/projects/{project}/global"
METADATA = "/fake-metadata/{project}/{zone}/{name}/attributes"
FIRMWARE_LINES = "SeaBIOS (version fake-1.16)\nBooting from Hard Disk 0...\n"
LABEL_FILTER = re.compile(r'^\s*labels\.([\w-]+)\s*=\s*"?([^"]*)"?\s*$')
# (name, guest CPUs, memory MB) as the machineTypes list says them
MACHINE_TYPES: tuple[tuple[str, int, int], ...] = (
    ("e2-standard-2", 2, 8192),
    ("e2-standard-4", 4, 16384),
    ("e2-standard-8", 8, 32768),
    ("n2-standard-2", 2, 8192),
    ("n2-standard-4", 4, 16384),
    ("n2-standard-8", 8, 32768),
    ("n2-highmem-8", 8, 65536),
    ("c3-standard-8", 8, 32768),
)
# Zones differ: us-central1-b lacks c3-standard-8, which us-central1-a has.
ZONE_MACHINE_TYPES: dict[str, tuple[tuple[str, int, int], ...]] = {
    "us-central1-b": tuple(m for m in MACHINE_TYPES if m[0] != "c3-standard-8"),
}


def _error(status: int, message: str, reason: str = "") -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message}
    if reason:
        error["errors"] = [{"message": message, "domain": "global", "reason": reason}]
    return web.json_response({"error": error}, status=status)


@dataclass
class _Operation:
    body: dict[str, Any]
    polls_left: int
    on_done: Any = None  # called once when the operation reaches DONE
    polls: int = 0


@dataclass
class FakeGce:
    """In-memory instances and operations, with switches for failures and preemption."""

    polls_until_done: int = 2  # GETs of an operation before it answers DONE
    realistic: bool = True
    boot_delay_s: tuple[float, float] = (0.5, 2.0)  # before a VM's start-up script runs
    flaky_every: int = 7  # every n-th API call answers 503 (0: never)
    failing_insert_every: int = 5  # every n-th insert operation ends in error (0: never)
    never_boot: set[str] = field(default_factory=set)  # VMs whose start-up script never runs
    never_boot_next: int = 0  # so many next VMs never boot
    refused_deletes: set[str] = field(default_factory=set)  # DELETEs of these answer 503
    delete_requests: list[str] = field(default_factory=list)  # names, one per DELETE
    instances: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    insert_bodies: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)  # each request's header
    unauthorized: bool = False
    firewalls: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    firewall_writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # method, body
    forbidden_firewall_methods: set[str] = field(default_factory=set)  # e.g. {"POST", "PATCH"}
    boot_dir: Path | None = None  # set: an insert boots a FakeVm running the startup-script
    vms: dict[tuple[str, str, str], FakeVm] = field(default_factory=dict)
    # machine types by zone; zones not named offer MACHINE_TYPES
    machine_types: dict[str, tuple[tuple[str, int, int], ...]] = field(
        default_factory=lambda: dict(ZONE_MACHINE_TYPES)
    )
    unknown_machine_type_status: int = 400  # the real API answers 400, sometimes 404
    _stopping: set[asyncio.Task[None]] = field(default_factory=set)
    _fail_next_insert: tuple[int, str, str] | None = None
    _failing_zones: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    _operations: dict[str, _Operation] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _calls: int = 0
    _just_failed: set[tuple[str, str]] = field(default_factory=set)  # (method, path)
    _inserts: int = 0
    _by_request_id: dict[str, dict[str, Any]] = field(default_factory=dict)  # -> operation
    _boots: dict[tuple[str, str, str], asyncio.Task[None]] = field(default_factory=dict)

    _hosts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _next_host(self) -> int:
        return (next(self._hosts) - 1) % 250 + 1

    @classmethod
    def kind(cls, **kwargs: Any) -> FakeGce:
        """A fake without boot delays, flaky calls or failing operations."""
        return cls(realistic=False, **kwargs)

    def __post_init__(self) -> None:
        if not self.realistic:
            self.boot_delay_s, self.flaky_every, self.failing_insert_every = (0.0, 0.0), 0, 0

    def fail_next_insert(
        self,
        code: str = "QUOTA_EXCEEDED",
        message: str = "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1.",
        *,
        http_status: int = 403,
    ) -> None:
        """Make the next insert's operation finish with this error (and create nothing)."""
        self._fail_next_insert = (http_status, code, message)

    def fail_zone(
        self,
        zone: str,
        code: str = "ZONE_RESOURCE_POOL_EXHAUSTED",
        message: str = "The zone does not have enough resources available.",
        *,
        http_status: int = 503,
    ) -> None:
        """Make every insert in ``zone`` finish with this error until further notice."""
        self._failing_zones[zone] = (http_status, code, message)

    def zone_machine_types(self, zone: str) -> tuple[tuple[str, int, int], ...]:
        """(name, cores, memory MB) of the machine types ``zone`` offers."""
        return self.machine_types.get(zone, MACHINE_TYPES)

    def preempt(self, name: str, zone: str, *, delete: bool = True) -> None:
        """Preempt a spot VM: remove it (termination action DELETE) or mark it TERMINATED."""
        key = next(k for k in self.instances if k[1:] == (zone, name))
        if delete:
            del self.instances[key]
        else:
            self.instances[key]["status"] = "TERMINATED"
        self._power_off(key)

    def _power_off(self, key: tuple[str, str, str]) -> None:
        boot = self._boots.pop(key, None)
        if boot is not None and not boot.done():
            boot.cancel()  # powered off before its start-up script ran
            self._stopping.add(boot)
            boot.add_done_callback(self._stopping.discard)
        vm = self.vms.pop(key, None)
        if vm is not None:
            task = asyncio.get_running_loop().create_task(vm.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def stop_vms(self) -> None:
        """Power off every FakeVm (and wait for those already powering off)."""
        for key in list(self.vms) + list(self._boots):
            self._power_off(key)
        await asyncio.gather(*self._stopping, return_exceptions=True)

    async def vm(self, name: str, timeout_s: float = 30.0) -> FakeVm:
        """The FakeVm of an instance once its boot delay has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            found = [vm for key, vm in self.vms.items() if key[2] == name]
            if found:
                return found[0]
            assert loop.time() < deadline, f"VM {name} did not boot"
            await asyncio.sleep(0.05)

    def operation_polls(self) -> list[int]:
        """How many times each operation was polled, in creation order."""
        return [op.polls for op in self._operations.values()]

    def app(self) -> web.Application:
        """The aiohttp application serving the fake API."""
        app = web.Application(middlewares=[self._auth])
        app.router.add_post(BASE + "/instances", self._insert)
        app.router.add_get(BASE + "/instances", self._list)
        app.router.add_get(BASE + "/instances/{name}", self._get)
        app.router.add_get(BASE + "/instances/{name}/serialPort", self._serial_port)
        app.router.add_delete(BASE + "/instances/{name}", self._delete)
        app.router.add_get(BASE + "/operations/{op}", self._get_operation)
        app.router.add_get(BASE + "/machineTypes", self._machine_types)
        app.router.add_get(GLOBAL + "/firewalls/{name}", self._get_firewall)
        app.router.add_post(GLOBAL + "/firewalls", self._insert_firewall)
        app.router.add_patch(GLOBAL + "/firewalls/{name}", self._patch_firewall)
        app.router.add_get(GLOBAL + "/operations/{op}", self._get_operation)
        app.router.add_get(METADATA + "/{key}", self._metadata)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/fake-metadata/"):  # the VM's side: no API credentials
            return await handler(request)
        self._calls += 1
        call = (request.method, request.path)
        flaky = bool(self.flaky_every) and self._calls % self.flaky_every == 0
        flaky = flaky and call not in self._just_failed  # a retry after a 503 gets through
        if flaky:
            self._just_failed.add(call)
        else:
            self._just_failed.discard(call)
        is_insert = request.method == "POST" and request.path.endswith("/instances")
        if flaky and not is_insert:  # lost before the service saw it
            return _error(503, "The service is currently unavailable.", "backendError")
        self.requests.append((request.method, request.path_qs))
        self.authorizations.append(request.headers.get("Authorization"))
        if self.unauthorized:
            return web.json_response(
                {
                    "error": {
                        "code": 401,
                        "message": "Request is missing required authentication credential.",
                        "status": "UNAUTHENTICATED",
                    }
                },
                status=401,
            )
        response: web.StreamResponse = await handler(request)
        if flaky:  # the insert was made, but its answer is lost
            return _error(503, "The service is currently unavailable.", "backendError")
        return response

    def _url(self, request: web.Request, suffix: str = "") -> str:
        m = request.match_info
        return f"{request.url.origin()}{BASE.format(**m)}{suffix}"

    def _operation(self, request: web.Request, kind: str, target: str, on_done: Any) -> dict:
        name = f"operation-{next(self._ids)}"
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(next(self._ids)),
            "name": name,
            "operationType": kind,
            "status": "PENDING" if self.polls_until_done else "DONE",
            "targetLink": target,
            "progress": 0,
        }
        if "zone" in request.match_info:
            op["zone"] = self._url(request).rsplit("/instances", 1)[0]
            op["selfLink"] = self._url(request, f"/operations/{name}")
        else:
            project = request.match_info["project"]
            op["selfLink"] = f"{request.url.origin()}{GLOBAL.format(project=project)}/{name}"
        state = _Operation(op, self.polls_until_done, on_done)
        self._operations[name] = state
        if not self.polls_until_done:
            self._finish(state)
        return op

    def _finish(self, state: _Operation) -> None:
        state.body["status"] = "DONE"
        state.body["progress"] = 100
        if state.on_done:
            state.on_done(state.body)

    async def _insert(self, request: web.Request) -> web.Response:
        request_id = request.query.get("requestId")
        if request_id and request_id in self._by_request_id:  # a retry: the same operation
            return web.json_response(self._by_request_id[request_id])
        body = await request.json()
        self.insert_bodies.append(body)
        m = request.match_info
        key = (m["project"], m["zone"], body["name"])
        target = self._url(request, f"/instances/{body['name']}")
        unknown = self._unknown_machine_type(m["project"], m["zone"], body.get("machineType", ""))
        if unknown is not None:
            return unknown
        failure, self._fail_next_insert = self._fail_next_insert, None
        failure = failure or self._failing_zones.get(m["zone"])
        self._inserts += 1
        every = self.failing_insert_every
        if failure is None and every and self._inserts % every == 0:
            failure = (503, "ZONE_RESOURCE_POOL_EXHAUSTED", "The zone is out of resources.")
        if key in self.instances and failure is None:
            return _error(409, f"The resource '{target}' already exists", "alreadyExists")

        def done(op: dict[str, Any]) -> None:
            if failure is not None:
                status, code, message = failure
                op["httpErrorStatusCode"] = status
                op["httpErrorMessage"] = "FORBIDDEN" if status == 403 else "ERROR"
                op["error"] = {"errors": [{"code": code, "message": message}]}
                self.instances.pop(key, None)
            else:
                self.instances[key]["status"] = "RUNNING"

        if failure is None:
            n = len(self.instances) + 2
            self.instances[key] = {
                "kind": "compute#instance",
                "id": str(next(self._ids)),
                "name": body["name"],
                "zone": self._url(request).rsplit("/instances", 1)[0],
                "machineType": body.get("machineType", ""),
                "status": "PROVISIONING",
                "labels": body.get("labels", {}),
                "metadata": {"kind": "compute#metadata", **body.get("metadata", {})},
                "scheduling": body.get("scheduling", {}),
                "networkInterfaces": [
                    {
                        "kind": "compute#networkInterface",
                        "name": "nic0",
                        "networkIP": f"10.128.0.{n}",
                        "accessConfigs": [
                            {
                                "kind": "compute#accessConfig",
                                "type": "ONE_TO_ONE_NAT",
                                "name": "External NAT",
                                # where its FakeVm's worker listens: a loopback address of
                                # its own (127.0.0.1, .2, …), as VMs share the pool's port
                                "natIP": f"127.0.0.{self._next_host()}",
                            }
                        ],
                    }
                ],
                "selfLink": target,
            }
            if body.get("tags"):
                self.instances[key]["tags"] = body["tags"]
            if self.boot_dir is not None:
                self._boot(request, key)
        operation = self._operation(request, "insert", target, done)
        if request_id:
            self._by_request_id[request_id] = operation
        return web.json_response(operation)

    def _unknown_machine_type(
        self, project: str, zone: str, machine_type_url: str
    ) -> web.Response | None:
        """The API's answer to an insert whose machine type the zone does not offer."""
        name = machine_type_url.rsplit("/", 1)[-1]
        if any(name == offered for offered, _, _ in self.zone_machine_types(zone)):
            return None
        if self.unknown_machine_type_status == 404:
            message = (
                f"The resource 'projects/{project}/zones/{zone}/machineTypes/{name}' was not found"
            )
            return _error(404, message, "notFound")
        message = (
            f"Invalid value for field 'resource.machineType': '{machine_type_url}'. "
            f"Machine type with name '{name}' does not exist in zone '{zone}'."
        )
        return _error(400, message, "invalid")

    def _boot(self, request: web.Request, key: tuple[str, str, str]) -> None:
        """Power the VM on: after its boot delay its start-up script runs (unless it is one
        that never boots)."""
        assert self.boot_dir is not None
        project, zone, name = key
        items = self.instances[key]["metadata"].get("items", [])
        script = next((i["value"] for i in items if i["key"] == "startup-script"), "")
        url = f"{request.url.origin()}{METADATA.format(project=project, zone=zone, name=name)}"
        never = name in self.never_boot or self.never_boot_next > 0
        if never:
            self.never_boot.add(name)
            self.never_boot_next = max(0, self.never_boot_next - 1)
        delay_s = random.uniform(*self.boot_delay_s)
        boot_dir = self.boot_dir
        host = self.instances[key]["networkInterfaces"][0]["accessConfigs"][0]["natIP"]

        async def boot() -> None:
            await asyncio.sleep(delay_s)
            if never:
                await asyncio.Event().wait()  # stuck: the worker never starts
            self.vms[key] = await FakeVm.boot(name, script, boot_dir, metadata_url=url, host=host)

        self._boots[key] = asyncio.get_running_loop().create_task(boot())

    async def _serial_port(self, request: web.Request) -> web.Response:
        """What the VM printed on its serial console (firmware, then its start-up script)."""
        m = request.match_info
        key = (m["project"], m["zone"], m["name"])
        if key not in self.instances:
            return _error(404, f"The resource '{self._url(request)}' was not found", "notFound")
        vm = self.vms.get(key)
        contents = FIRMWARE_LINES + (vm.console() if vm is not None else "")
        return web.json_response(
            {
                "kind": "compute#serialPortOutput",
                "contents": contents,
                "start": "0",
                "next": str(len(contents)),
                "selfLink": f"{self._url(request)}/serialPort",
            }
        )

    async def _metadata(self, request: web.Request) -> web.Response:
        """One metadata item of one instance, as the metadata server answers it."""
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor:Google header.\n")
        m = request.match_info
        instance = self.instances.get((m["project"], m["zone"], m["name"]))
        items = instance["metadata"].get("items", []) if instance else []
        for item in items:
            if item["key"] == m["key"]:
                return web.Response(text=item["value"], content_type="text/plain")
        return web.Response(status=404, text="not found\n")

    async def _get(self, request: web.Request) -> web.Response:
        m = request.match_info
        instance = self.instances.get((m["project"], m["zone"], m["name"]))
        if instance is None:
            return _error(404, f"The resource '{self._url(request)}' was not found", "notFound")
        return web.json_response(instance)

    async def _delete(self, request: web.Request) -> web.Response:
        m = request.match_info
        key = (m["project"], m["zone"], m["name"])
        self.delete_requests.append(m["name"])
        if m["name"] in self.refused_deletes:
            return _error(503, "The service is currently unavailable.", "backendError")
        if key not in self.instances:
            return _error(404, f"The resource '{self._url(request)}' was not found", "notFound")
        self.instances[key]["status"] = "STOPPING"
        self._power_off(key)
        target = self._url(request)
        return web.json_response(
            self._operation(request, "delete", target, lambda op: self.instances.pop(key, None))
        )

    async def _list(self, request: web.Request) -> web.Response:
        m = request.match_info
        items = [
            i for (p, z, _), i in self.instances.items() if (p, z) == (m["project"], m["zone"])
        ]
        flt = request.query.get("filter")
        if flt:
            match = LABEL_FILTER.match(flt)
            if match is None:
                return _error(400, f"Invalid list filter expression '{flt}'", "invalid")
            items = [i for i in items if i.get("labels", {}).get(match[1]) == match[2]]
        return web.json_response(
            {"kind": "compute#instanceList", "id": self._url(request), "items": items}
        )

    async def _get_operation(self, request: web.Request) -> web.Response:
        state = self._operations.get(request.match_info["op"])
        if state is None:
            return _error(404, "The operation was not found", "notFound")
        state.polls += 1
        if state.body["status"] != "DONE":
            state.polls_left -= 1
            if state.polls_left <= 0:
                self._finish(state)
            else:
                state.body["status"] = "RUNNING"
        return web.json_response(state.body)

    async def _get_firewall(self, request: web.Request) -> web.Response:
        refusal = self._firewall_refusal(request)
        if refusal is not None:
            return refusal
        m = request.match_info
        rule = self.firewalls.get((m["project"], m["name"]))
        if rule is None:
            return _error(404, f"The resource '{request.path}' was not found", "notFound")
        return web.json_response(rule)

    def _firewall_refusal(self, request: web.Request) -> web.Response | None:
        if request.method not in self.forbidden_firewall_methods:
            return None
        verb = {"GET": "get", "POST": "create", "PATCH": "update"}[request.method]
        message = f"Required 'compute.firewalls.{verb}' permission for '{request.path}'"
        return _error(403, message, "forbidden")

    async def _insert_firewall(self, request: web.Request) -> web.Response:
        refusal = self._firewall_refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        self.firewall_writes.append(("POST", body))
        project = request.match_info["project"]
        if (project, body["name"]) in self.firewalls:
            return _error(409, f"The resource '{body['name']}' already exists", "alreadyExists")
        target = f"{request.url.origin()}{GLOBAL.format(project=project)}/firewalls/{body['name']}"
        network = body.get("network", "global/networks/default").rsplit("/", 1)[-1]
        self.firewalls[(project, body["name"])] = {
            "kind": "compute#firewall",
            "id": str(next(self._ids)),
            "priority": 1000,
            **body,
            "network": f"https://www.googleapis.com/compute/v1/projects/{project}"
            f"/global/networks/{network}",
            "selfLink": target,
        }
        return web.json_response(self._operation(request, "insert", target, None))

    async def _patch_firewall(self, request: web.Request) -> web.Response:
        refusal = self._firewall_refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        self.firewall_writes.append(("PATCH", body))
        m = request.match_info
        rule = self.firewalls.get((m["project"], m["name"]))
        if rule is None:
            return _error(404, f"The resource '{request.path}' was not found", "notFound")
        rule.update(body)
        return web.json_response(self._operation(request, "patch", rule["selfLink"], None))

    async def _machine_types(self, request: web.Request) -> web.Response:
        m = request.match_info
        zone_url = (
            f"https://www.googleapis.com/compute/v1/projects/{m['project']}/zones/{m['zone']}"
        )
        items = [
            {
                "kind": "compute#machineType",
                "id": str(1000 + i),
                "name": name,
                "description": f"{cores} vCPUs, {memory_mb / 1024:g} GB RAM",
                "guestCpus": cores,
                "memoryMb": memory_mb,
                "imageSpaceGb": 0,
                "maximumPersistentDisks": 128,
                "maximumPersistentDisksSizeGb": "263168",
                "zone": m["zone"],
                "selfLink": f"{zone_url}/machineTypes/{name}",
                "isSharedCpu": False,
            }
            for i, (name, cores, memory_mb) in enumerate(self.zone_machine_types(m["zone"]))
        ]
        return web.json_response(
            {"kind": "compute#machineTypeList", "id": zone_url, "items": items}
        )


@asynccontextmanager
async def serving(gce: FakeGce) -> AsyncIterator[str]:
    """Serve ``gce`` on 127.0.0.1 on the running loop; yields its http endpoint."""
    async with serve_app(gce.app()) as endpoint:
        try:
            yield endpoint
        finally:
            await gce.stop_vms()
