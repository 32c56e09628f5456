"""A tiny HTTP proxy in front of an emulator that injects faults into chosen requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import yarl
from aiohttp import web

# A fault looks at (method, path with query) and answers instead of the emulator, or None.
Fault = Callable[[str, str], "web.StreamResponse | None"]


@dataclass
class Proxy:
    """Where the proxy listens, the faults it injects and every request it saw."""

    port: int = 0
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    corrupt_downloads: bool = False

    def route(self, url: str, upstream: str) -> str:
        """``url`` (signed for ``upstream``) sent through the proxy instead."""
        return url.replace(upstream, f"http://127.0.0.1:{self.port}", 1)


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
        for fault in state.faults:
            if (answer := fault(request.method, request.raw_path)) is not None:
                state.seen.append((request.method, request.raw_path, answer.status))
                return answer
        url = yarl.URL(upstream + request.raw_path, encoded=True)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        body = await request.read()
        async with client.request(request.method, url, headers=headers, data=body) as up:
            data = await up.read()
            state.seen.append((request.method, request.raw_path, up.status))
            if state.corrupt_downloads and request.method == "GET" and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            drop = {"content-length", "transfer-encoding", "content-encoding"}
            out = {k: v for k, v in up.headers.items() if k.lower() not in drop}
            return web.Response(status=up.status, body=data, headers=out)

    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()
        await client.close()
