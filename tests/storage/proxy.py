"""A tiny HTTP proxy in front of an emulator that injects faults into chosen requests.

It records every request (method, path, status) and the body bytes it received, and can:
- answer instead of the emulator (``faults``), before or after (``lose_answers``) forwarding;
- cut a download's body off halfway (``cut_downloads``): the connection drops mid-body;
- start GCS resumable sessions the XML way (``gcs_resumable``): gcp-storage-emulator answers
  501 to the signed ``POST`` with ``x-goog-resumable: start``, so the proxy starts the session
  through the emulator's JSON API instead and hands back its session URI (routed through the
  proxy); chunks, status queries and the final object are then the emulator's own.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp
import yarl
from aiohttp import web

from tests.http_helpers import serve_app

# A fault looks at (method, path with query) and answers instead of the emulator, or None.
Fault = Callable[[str, str], "web.StreamResponse | None"]


@dataclass
class Proxy:
    """Where the proxy listens, the faults it injects and every request it saw."""

    port: int = 0
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    received: list[tuple[str, str, int]] = field(default_factory=list)  # method, headers, bytes
    corrupt_downloads: bool = False
    # (method, path) -> True: forward the request, then answer 503 as if the answer was lost
    lose_answers: list[Callable[[str, str], bool]] = field(default_factory=list)
    cut_downloads: list[Callable[[str, str], bool]] = field(default_factory=list)
    gcs_resumable: bool = False

    def body_bytes(self, method: str, containing: str = "") -> int:
        """How many body bytes the proxy received in ``method`` requests (whose headers
        contain ``containing``)."""
        return sum(n for m, h, n in self.received if m == method and containing in h)

    def route(self, url: str, upstream: str) -> str:
        """``url`` (signed for ``upstream``) sent through the proxy instead."""
        return url.replace(upstream, f"http://127.0.0.1:{self.port}", 1)


def fail_nth(method: str, status: int, nth: int, *, containing: str = "") -> Fault:
    """A fault answering ``status`` to the ``nth`` (1-based) matching request only."""
    count = 0

    def fault(m: str, path: str) -> web.StreamResponse | None:
        nonlocal count
        if m != method or containing not in path:
            return None
        count += 1
        if count != nth:
            return None
        return web.Response(status=status, text="<Error><Code>SlowDown</Code></Error>")

    return fault


def nth(method: str, n: int, *, containing: str = "") -> Callable[[str, str], bool]:
    """A predicate true for the ``n``th (1-based) matching request only."""
    count = 0

    def match(m: str, path: str) -> bool:
        nonlocal count
        if m != method or containing not in path:
            return False
        count += 1
        return count == n

    return match


def fail_once(method: str, status: int, *, containing: str = "") -> Fault:
    """A fault answering ``status`` to the first ``method`` request whose path contains text."""
    fired = False

    def fault(m: str, path: str) -> web.StreamResponse | None:
        nonlocal fired
        if fired or m != method or containing not in path:
            return None
        fired = True
        return web.Response(status=status, text="<Error><Code>SlowDown</Code></Error>")

    return fault


@asynccontextmanager
async def proxy_to(upstream: str) -> AsyncIterator[Proxy]:
    """Run a proxy to ``upstream`` (http://127.0.0.1:P) on a free port."""
    state = Proxy()
    client = aiohttp.ClientSession(auto_decompress=False)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        method, raw_path = request.method, request.raw_path
        summary = " ".join(f"{k}: {v}" for k, v in request.headers.items()) + " " + raw_path
        state.received.append((method, summary, len(body)))
        for fault in state.faults:
            if (answer := fault(method, raw_path)) is not None:
                state.seen.append((method, raw_path, answer.status))
                return answer
        if state.gcs_resumable and request.headers.get("x-goog-resumable") == "start":
            return await start_session(request)
        url = yarl.URL(upstream + raw_path, encoded=True)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        data_in = io.BytesIO(body) if body else None  # raw large bytes warn in aiohttp
        async with client.request(method, url, headers=headers, data=data_in) as up:
            data = await up.read()
            state.seen.append((method, raw_path, up.status))
            if any(lose(method, raw_path) for lose in state.lose_answers):
                return web.Response(status=503, text="<Error><Code>Lost</Code></Error>")
            if state.corrupt_downloads and method == "GET" and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            drop = {"content-length", "transfer-encoding", "content-encoding"}
            out = {k: v for k, v in up.headers.items() if k.lower() not in drop}
            if method == "GET" and any(cut(method, raw_path) for cut in state.cut_downloads):
                return await cut_off(request, up.status, out, data)
            return web.Response(status=up.status, body=data, headers=out)

    async def cut_off(
        request: web.Request, status: int, headers: dict[str, str], data: bytes
    ) -> web.StreamResponse:
        """Promise the whole body, send half of it, drop the connection."""
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        assert request.transport is not None
        request.transport.close()
        return resp

    async def start_session(request: web.Request) -> web.StreamResponse:
        bucket, _, name = request.path.lstrip("/").partition("/")
        path = f"/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name={quote(name, safe='')}"
        async with client.post(yarl.URL(upstream + path, encoded=True)) as up:
            await up.read()
            state.seen.append(("POST", request.raw_path, up.status))
            location = up.headers.get("Location", "")
            status = 201 if up.status == 200 else up.status
            local = f"http://127.0.0.1:{state.port}"
            return web.Response(
                status=status, headers={"Location": location.replace(upstream, local)}
            )

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handle)
    try:
        async with serve_app(app, access_log=None) as base_url:
            state.port = int(base_url.rsplit(":", 1)[1])
            yield state
    finally:
        await client.close()
