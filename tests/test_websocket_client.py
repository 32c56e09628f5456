"""The driver's own WebSocket client against aiohttp's server, which the worker runs.

What the driver relies on: messages of any size arrive whole (a schedule frame for hundreds of
jobs runs to megabytes), pings are answered, fragmented messages are joined, the server's close
code is seen, a refused upgrade names its status, and sends after the end fail cleanly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import WSMsgType, web

from app.engine.workers.websocket import (
    CLOSED,
    OP_CLOSE,
    OP_TEXT,
    HandshakeError,
    WebSocket,
)
from tests.http_helpers import serve_app

Handler = Callable[[web.WebSocketResponse, web.Request], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler, *, token: str = "t0k3n") -> AsyncIterator[str]:
    async def connect(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.Response(status=401, text="no\n")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await handler(ws, request)
        return ws

    app = web.Application()
    app.router.add_get("/ws", connect)
    async with serve_app(app) as base_url:
        yield base_url.removeprefix("http://")


async def dial(address: str, token: str = "t0k3n", max_size: int = 1 << 26) -> WebSocket:
    async with asyncio.timeout(10):
        return await WebSocket.connect(
            address,
            "/ws",
            {"Authorization": f"Bearer {token}"},
            tls_sha256=None,
            connect_timeout_s=5,
            max_size=max_size,
        )


async def echo(ws: web.WebSocketResponse, _request: web.Request) -> None:
    async for frame in ws:
        if frame.type == WSMsgType.TEXT:
            await ws.send_str(frame.data)


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 3_000_001])
async def test_messages_of_every_length_class_come_back_whole(size: int) -> None:
    text = "".join(chr(0x41 + i % 26) for i in range(size - 1)) + ("é" if size else "")
    async with server(echo) as address:
        ws = await dial(address)
        await ws.send_text(text)
        async with asyncio.timeout(10):
            assert await ws.receive() == (OP_TEXT, text.encode())
        await ws.close()
        assert ws.closed


async def test_pings_are_answered_and_fragments_joined() -> None:
    got_pong = asyncio.Event()

    async def talk(ws: web.WebSocketResponse, request: web.Request) -> None:
        await ws.ping(b"are you there")
        # a message in three fragments, as a proxy may split it (aiohttp never sends one, so
        # the frames are written raw: FIN bit, opcode, length, unmasked payload)
        assert request.transport is not None
        request.transport.write(b"\x01\x04one " + b"\x00\x04two " + b"\x80\x05three")
        async for frame in ws:
            if frame.type == WSMsgType.TEXT and frame.data == "pong seen?":
                got_pong.set()

    async with server(talk) as address:
        ws = await dial(address)
        async with asyncio.timeout(10):
            assert await ws.receive() == (OP_TEXT, b"one two three")
            await ws.send_text("pong seen?")
            await got_pong.wait()
        await ws.close()


async def test_the_servers_close_code_is_seen_and_later_sends_fail() -> None:
    async def replace(ws: web.WebSocketResponse, _request: web.Request) -> None:
        await ws.close(code=4001, message=b"replaced")

    async with server(replace) as address:
        ws = await dial(address)
        async with asyncio.timeout(10):
            assert await ws.receive() == (OP_CLOSE, b"")
            assert await ws.receive() == (CLOSED, b"")
        assert ws.close_code == 4001 and ws.closed
        with pytest.raises(ConnectionError):
            await ws.send_text("anyone?")


async def test_a_refused_upgrade_names_its_status() -> None:
    async with server(echo) as address:
        with pytest.raises(HandshakeError, match="401"):
            await dial(address, token="wrong")


async def test_a_message_over_the_limit_ends_the_connection() -> None:
    async def big(ws: web.WebSocketResponse, _request: web.Request) -> None:
        await ws.send_str("x" * 2000)
        await ws.receive()

    async with server(big) as address:
        ws = await dial(address, max_size=1000)
        async with asyncio.timeout(10):
            assert await ws.receive() == (CLOSED, b"")
        assert ws.closed


async def test_a_server_that_goes_away_ends_the_reader() -> None:
    gone = asyncio.Event()

    async def vanish(ws: web.WebSocketResponse, _request: web.Request) -> None:
        await gone.wait()

    async with server(vanish) as address:
        ws = await dial(address)
        reading = asyncio.ensure_future(ws.receive())
        gone.set()  # the handler returns and the server drops the connection
        async with asyncio.timeout(10):
            assert (await reading)[0] in (CLOSED, OP_CLOSE)
