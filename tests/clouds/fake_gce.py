"""A fake Compute Engine REST API on 127.0.0.1 answering the documented JSON shapes."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BASE = "/compute/v1/projects/{project}/zones/{zone}"
LABEL_FILTER = re.compile(r'^\s*labels\.([\w-]+)\s*=\s*"?([^"]*)"?\s*$')


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
    instances: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    insert_bodies: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    unauthorized: bool = False
    _fail_next_insert: tuple[int, str, str] | None = None
    _failing_zones: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    _operations: dict[str, _Operation] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

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

    def preempt(self, name: str, zone: str, *, delete: bool = True) -> None:
        """Preempt a spot VM: remove it (termination action DELETE) or mark it TERMINATED."""
        key = next(k for k in self.instances if k[1:] == (zone, name))
        if delete:
            del self.instances[key]
        else:
            self.instances[key]["status"] = "TERMINATED"

    def operation_polls(self) -> list[int]:
        """How many times each operation was polled, in creation order."""
        return [op.polls for op in self._operations.values()]

    def app(self) -> web.Application:
        """The aiohttp application serving the fake API."""
        app = web.Application(middlewares=[self._auth])
        app.router.add_post(BASE + "/instances", self._insert)
        app.router.add_get(BASE + "/instances", self._list)
        app.router.add_get(BASE + "/instances/{name}", self._get)
        app.router.add_delete(BASE + "/instances/{name}", self._delete)
        app.router.add_get(BASE + "/operations/{op}", self._get_operation)
        app.router.add_get(BASE + "/machineTypes", self._machine_types)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
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
            "zone": self._url(request).rsplit("/instances", 1)[0],
            "targetLink": target,
            "selfLink": self._url(request, f"/operations/{name}"),
            "progress": 0,
        }
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
        body = await request.json()
        self.insert_bodies.append(body)
        m = request.match_info
        key = (m["project"], m["zone"], body["name"])
        target = self._url(request, f"/instances/{body['name']}")
        failure, self._fail_next_insert = self._fail_next_insert, None
        failure = failure or self._failing_zones.get(m["zone"])
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
            n = len(self.instances) + 1
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
                        "networkIP": "127.0.0.1",
                        "accessConfigs": [
                            {
                                "kind": "compute#accessConfig",
                                "type": "ONE_TO_ONE_NAT",
                                "name": "External NAT",
                                "natIP": f"203.0.113.{n}",
                            }
                        ],
                    }
                ],
                "selfLink": target,
            }
        return web.json_response(self._operation(request, "insert", target, done))

    async def _get(self, request: web.Request) -> web.Response:
        m = request.match_info
        instance = self.instances.get((m["project"], m["zone"], m["name"]))
        if instance is None:
            return _error(404, f"The resource '{self._url(request)}' was not found", "notFound")
        return web.json_response(instance)

    async def _delete(self, request: web.Request) -> web.Response:
        m = request.match_info
        key = (m["project"], m["zone"], m["name"])
        if key not in self.instances:
            return _error(404, f"The resource '{self._url(request)}' was not found", "notFound")
        self.instances[key]["status"] = "STOPPING"
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

    async def _machine_types(self, request: web.Request) -> web.Response:
        zone = request.match_info["zone"]
        items = [
            {"kind": "compute#machineType", "name": n, "zone": zone, "guestCpus": c}
            for n, c in (("e2-standard-4", 4), ("n2-standard-8", 8), ("n2-standard-2", 2))
        ]
        return web.json_response({"kind": "compute#machineTypeList", "items": items})


@asynccontextmanager
async def serving(gce: FakeGce) -> AsyncIterator[str]:
    """Serve ``gce`` on 127.0.0.1 on the running loop; yields its http endpoint."""
    runner = web.AppRunner(gce.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
