"""The worker's own HTTP server and WebSocket end, over real sockets on 127.0.0.1.

What a hostile or broken client may do to it: say nothing, say too much, say it wrongly, send
frames the protocol forbids. Each ends with an answer or a closed connection, never a hung
task or a traceback; and the driver's own client (app.engine.workers.websocket) talks to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from app.engine.workers.websocket import CLOSED, OP_CLOSE, OP_TEXT
from app.engine.workers.websocket import WebSocket as DriverWebSocket
from app.protocol import HEALTH_PATH, LOG_PATH, WS_PATH, Outcome, bearer
from app.worker.http import Handler, HttpError, HttpServer, Request
from app.worker.websocket import WebSocket
from tests.worker_helpers import Driver, WorkerProcess, connect, job, start_worker

TOKEN = "t0k3n"
# the example key of RFC 6455 (section 1.3) and the answer it must get
KEY, ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
UPGRADE = (
    "GET /ws HTTP/1.1\r\nHost: w\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


async def routes(request: Request) -> None:
    """A plain page at /hello, an echoing WebSocket at /ws (binary answered with its size)."""
    if request.path == "/hello":
        await request.respond(200, f"hello {request.query.get('who', 'anyone')}\n")
        return
    if request.path != "/ws":
        raise HttpError(404, "404: Not Found")
    ws = await WebSocket.accept(request, max_message_bytes=1 << 20)
    while (message := await ws.receive()) is not None:
        reply = message if isinstance(message, str) else f"{len(message)} bytes"
        await ws.send_str(reply)
        if reply == "close please":
            await ws.close(code=4001, message=b"as asked")


@asynccontextmanager
async def serving(handler: Handler = routes, **options: float) -> AsyncIterator[int]:
    server = HttpServer(handler, **options)
    port = await server.start("127.0.0.1", 0, ssl_context=None)
    try:
        yield port
    finally:
        await server.close()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``; everything the server answers until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        async with asyncio.timeout(10):
            return await reader.read()
    finally:
        writer.close()


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """One client frame, masked as a client must (unless told not to)."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = b"\x01\x02\x03\x04"
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@asynccontextmanager
async def upgraded(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(UPGRADE)
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert f"Sec-WebSocket-Accept: {ACCEPT}\r\n".encode() in head
        yield reader, writer
    finally:
        writer.close()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of the server's next frame; servers never mask."""
    async with asyncio.timeout(10):
        b0, b1 = await reader.readexactly(2)
        assert b1 & 0x80 == 0 and b0 & 0x80, "a server frame is final and unmasked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        return b0 & 0x0F, await reader.readexactly(n)


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# --- HTTP ----------------------------------------------------------------------------------


async def test_a_request_is_answered_and_the_connection_closed() -> None:
    async with serving() as port:
        answer = await exchange(port, b"GET /hello?who=you HTTP/1.1\r\nHost: w\r\n\r\n")
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in head and b"Content-Length: 10" in head
    assert body == b"hello you\n"


@pytest.mark.parametrize(
    "request_head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /hello\r\n\r\n",  # no version
        b"GET hello HTTP/1.1\r\n\r\n",  # not a path
        b"GET /hello HTTP/2.0\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nNo-Colon-Here\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nName : space before the colon\r\n\r\n",
        b"GET /hello HTTP/1.1\r\nX: a\r\n folded: onto the last\r\n\r\n",
    ],
)
async def test_a_malformed_request_gets_400_and_no_traceback(
    request_head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving() as port:
        answer = await exchange(port, request_head)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert_no_traceback(caplog)


async def test_an_oversized_head_or_too_many_headers_get_431() -> None:
    huge = b"GET /hello HTTP/1.1\r\nX-Big: " + b"x" * (100 * 1024) + b"\r\n\r\n"
    many = b"GET /hello HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n"
    async with serving() as port:
        for request in (huge, many):
            answer = await exchange(port, request)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]


async def test_a_client_that_says_nothing_is_dropped_after_the_head_deadline() -> None:
    async with serving(head_timeout_s=0.3) as port:
        for sent in (b"", b"GET /hello HTTP/1.1\r\nHost:"):  # silent, or stalled mid-head
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(sent)
            try:
                async with asyncio.timeout(5):  # far beyond the 0.3 s deadline
                    assert await reader.read() == b""
            except ConnectionResetError:
                pass  # dropped with a reset: as good
            finally:
                writer.close()


async def test_a_client_gone_mid_request_leaves_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving() as port:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hel")
        await writer.drain()
        writer.close()
        assert (await exchange(port, b"GET /hello HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
    assert_no_traceback(caplog)


async def test_a_handler_failure_answers_500_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(_request: Request) -> None:
        raise KeyError("a bug of ours")

    async with serving(broken) as port:
        answer = await exchange(port, b"GET / HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert any(r.exc_info for r in caplog.records)  # our fault: the traceback is wanted


# --- WebSocket -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Upgrade": "h2c"}, 400),
        ({"Connection": "keep-alive"}, 400),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, 400),  # not 16 bytes
        ({"Sec-WebSocket-Version": "8"}, 426),
    ],
)
async def test_a_bad_upgrade_is_refused(headers: dict[str, str], status: int) -> None:
    fields = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    } | headers
    request = "GET /ws HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    async with serving() as port:
        answer = await exchange(port, (request + "\r\n").encode())
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    if status == 426:
        assert b"Sec-WebSocket-Version: 13\r\n" in answer


async def test_fragments_are_joined_pings_answered_and_binary_passed_on() -> None:
    async with serving() as port, upgraded(port) as (reader, writer):
        writer.write(frame(OP_TEXT, b"one ", fin=False) + frame(0x9, b"are you there"))
        writer.write(frame(0x0, b"two ", fin=False) + frame(0x0, "thr\u00e9e".encode()))
        writer.write(frame(0x2, b"\x00" * 70_000))
        assert await read_frame(reader) == (0xA, b"are you there")  # the pong, between fragments
        assert await read_frame(reader) == (OP_TEXT, "one two thr\u00e9e".encode())
        assert await read_frame(reader) == (OP_TEXT, b"70000 bytes")


async def test_the_close_handshake_echoes_the_code_and_ends_the_connection() -> None:
    async with serving() as port, upgraded(port) as (reader, writer):
        writer.write(frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
        assert await read_frame(reader) == (OP_CLOSE, struct.pack("!H", 1000))
        async with asyncio.timeout(10):
            assert await reader.read() == b""


async def test_the_server_closes_once_and_drops_what_comes_after() -> None:
    async with serving() as port, upgraded(port) as (reader, writer):
        writer.write(frame(OP_TEXT, b"close please") + frame(OP_TEXT, b"too late"))
        assert await read_frame(reader) == (OP_TEXT, b"close please")
        opcode, payload = await read_frame(reader)
        assert (opcode, payload) == (OP_CLOSE, struct.pack("!H", 4001) + b"as asked")
        writer.write(frame(OP_CLOSE, struct.pack("!H", 4001)))  # the reply it waits for
        async with asyncio.timeout(5):  # well within its wait for that reply
            assert await reader.read() == b""  # no echo of "too late", no second close


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (frame(OP_TEXT, b"bare", masked=False), 1002),
        (bytes([0x80 | 0x41]) + frame(OP_TEXT, b"rsv")[1:], 1002),  # a reserved bit
        (frame(0x0, b"continues nothing"), 1002),
        (frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002),
        (frame(0x9, b"p" * 126), 1002),  # a control frame over 125 bytes
        (frame(0x3, b""), 1002),  # an unknown opcode
        (frame(OP_TEXT, b"\xff\xfe"), 1007),
        (frame(OP_TEXT, b"x" * ((1 << 20) + 1)), 1009),
    ],
)
async def test_a_frame_the_protocol_forbids_closes_the_connection(
    sent: bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving() as port, upgraded(port) as (reader, writer):
        writer.write(sent)
        opcode, payload = await read_frame(reader)
        assert (opcode, struct.unpack("!H", payload[:2])[0]) == (OP_CLOSE, code)
        async with asyncio.timeout(10):
            assert await reader.read() == b""
    assert_no_traceback(caplog)


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 3_000_001])
async def test_the_drivers_client_and_this_server_carry_every_length_class(size: int) -> None:
    text = "".join(chr(0x41 + i % 26) for i in range(size - 1)) + ("é" if size else "")

    async def echo(request: Request) -> None:
        ws = await WebSocket.accept(request)
        while (message := await ws.receive()) is not None:
            await ws.send_str(message if isinstance(message, str) else "binary")

    async with serving(echo) as port:
        async with asyncio.timeout(10):
            ws = await DriverWebSocket.connect(
                f"127.0.0.1:{port}",
                "/ws",
                {},
                tls_sha256=None,
                connect_timeout_s=5,
                max_size=1 << 26,
            )
            await ws.send_text(text)
            assert await ws.receive() == (OP_TEXT, text.encode())
            await ws.close()
        assert ws.closed


async def test_a_close_from_the_server_reaches_the_drivers_client_and_sends_then_fail() -> None:
    accepted: asyncio.Queue[WebSocket] = asyncio.Queue()

    async def hold(request: Request) -> None:
        ws = await WebSocket.accept(request)
        await accepted.put(ws)
        while await ws.receive() is not None:
            pass

    async with serving(hold) as port:
        async with asyncio.timeout(10):
            client = await DriverWebSocket.connect(
                f"127.0.0.1:{port}", "/ws", {}, tls_sha256=None, connect_timeout_s=5, max_size=1024
            )
            server_end = await accepted.get()
            await server_end.close(code=4001, message=b"replaced")
            await server_end.close(code=1001)  # a second close sends nothing more
            assert await client.receive() == (OP_CLOSE, b"")
            assert await client.receive() == (CLOSED, b"")
        assert client.close_code == 4001
        with pytest.raises(ConnectionError):
            await server_end.send_str("anyone?")


# --- the agent's routes, on a real worker process ------------------------------------------


async def raw(worker: WorkerProcess, data: bytes) -> bytes:
    return await exchange(worker.port, data)


async def test_the_agent_answers_unknown_paths_other_methods_and_bad_requests(
    worker: WorkerProcess,
) -> None:
    auth = {"Authorization": bearer(worker.token)}
    log_url = worker.base_url + LOG_PATH.format(batch_id=1, job_id=1, attempt=1)
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.get(worker.base_url + "/nowhere") as response:
            assert response.status == 404
        async with session.post(worker.base_url + HEALTH_PATH) as response:
            assert (response.status, response.headers["Allow"]) == (405, "GET")
        for ids in ("x/1/1", "1/1/1/1", "1/-/1"):
            async with session.get(worker.base_url + f"/api/v1/log/{ids}") as response:
                assert response.status == 404, ids
        async with session.get(log_url, params={"offset": "ten"}) as response:
            assert (response.status, await response.text()) == (
                400,
                "offset must be a byte count\n",
            )
        async with session.get(worker.base_url + WS_PATH) as response:  # the token, no upgrade
            assert response.status == 400
    assert (await raw(worker, b"GARBAGE\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    big = b"GET / HTTP/1.1\r\nX: " + b"y" * (70 * 1024) + b"\r\n\r\n"
    assert (await raw(worker, big)).startswith(b"HTTP/1.1 431 ")
    async with aiohttp.ClientSession() as session, session.get(worker.base_url + HEALTH_PATH) as r:
        assert r.status == 200  # none of that hurt it
    assert "Traceback" not in worker.stderr_text()


async def test_a_whole_log_is_text_and_a_followed_one_bytes(
    worker: WorkerProcess, driver: Driver
) -> None:
    await driver.schedule(job(1, r"printf 'caf\xc3\xa9 \xff\n'"))
    assert (await driver.result((1, 1, 1))).outcome is Outcome.SUCCESS
    url = worker.base_url + LOG_PATH.format(batch_id=1, job_id=1, attempt=1)
    async with aiohttp.ClientSession(headers={"Authorization": bearer(worker.token)}) as session:
        async with session.get(url) as response:
            assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert await response.text() == "café \ufffd\n"
        async with session.get(url, params={"offset": "3"}) as response:
            assert response.headers["Content-Type"] == "application/octet-stream"
            assert await response.read() == b"\xc3\xa9 \xff\n"  # a character split: as it is


async def test_a_serving_agent_never_loads_aiohttp(tmp_path: Path) -> None:
    # every import the agent makes goes to its log (-X importtime), through a whole job
    agent = await start_worker(tmp_path, env=os.environ | {"PYTHONPROFILEIMPORTTIME": "1"})
    try:
        driver = await connect(agent)
        await driver.schedule(job(1, "echo hi"))
        assert (await driver.result((1, 1, 1))).log == "hi\n"
        await driver.close()
    finally:
        await agent.stop()
    imported = [line.rsplit("|", 1)[1].strip() for line in agent.stderr_text().splitlines()
                if line.startswith("import time:") and "|" in line]  # fmt: skip
    assert "app.worker.server" in imported
    assert [m for m in imported if m.split(".")[0] in ("aiohttp", "yarl", "multidict")] == []
