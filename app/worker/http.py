"""A small HTTP/1.1 server on asyncio streams: one request per connection, GET only.

The agent serves three routes to one authenticated driver and a few log readers; aiohttp's
server did that at the cost of two thirds of the agent's start-up imports. This reads one
request head within a deadline and size limits, hands it to the handler, answers with
``Connection: close`` (or the handler takes the connection over for a WebSocket), and drops
any client that says too little, too slowly or too much, without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

log = logging.getLogger("labbatch.worker")

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
MAX_HEADERS = 100
HEAD_TIMEOUT_S = 10.0  # a client that connects and says nothing is dropped after this
WRITE_TIMEOUT_S = 60.0  # a client that does not read its answer is dropped after this
CLOSE_WAIT_S = 2.0  # how long close() waits for handlers to see their connection dropped
LINGER_S = 1.0  # how long a refused request's unread rest is taken in (see _refuse)
TEXT = "text/plain; charset=utf-8"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 method and header names
_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


class HttpError(Exception):
    """Answer the request with ``status`` and ``text``; raised by the parser and handlers."""

    def __init__(self, status: int, text: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {text.strip()}")
        self.status = status
        self.text = text
        self.headers = headers or {}


@dataclass(slots=True)
class Request:
    """One request head, and the connection it came on (a WebSocket takes that over)."""

    method: str
    path: str
    query: dict[str, str]  # the first value of each name
    headers: dict[str, str]  # lower-case names; a repeated header keeps its first value
    remote: str | None  # the peer's address, for logs
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    answered: bool = False  # set once a response (or the 101) has been written

    async def respond(
        self,
        status: int,
        body: bytes | str = b"",
        *,
        content_type: str = TEXT,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send the whole response; the connection closes after it."""
        self.answered = True
        await write_response(self.writer, status, body, content_type=content_type, headers=headers)


async def write_response(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes | str,
    *,
    content_type: str = TEXT,
    headers: dict[str, str] | None = None,
) -> None:
    """Write a ``Connection: close`` response in one write, within WRITE_TIMEOUT_S."""
    data = body.encode() if isinstance(body, str) else body
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
    async with asyncio.timeout(WRITE_TIMEOUT_S):
        await writer.drain()


Handler = Callable[[Request], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request:
    """Read and parse one request head; HttpError for a malformed or oversized one.

    EOFError if the client went before its head was complete.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, "request head over 64 KiB\n") from exc
    except asyncio.IncompleteReadError as exc:
        raise EOFError("the client went before its request was complete") from exc
    request_line, *header_lines = head[:-4].split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1].startswith(b"/"):
        raise HttpError(400, "malformed request line\n")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HttpError(400, "only HTTP/1.x is served\n")
    if len(header_lines) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} headers\n")
    path, _, query = target.decode("latin-1").partition("?")
    peer = writer.get_extra_info("peername")
    return Request(
        method=method.decode("ascii"),
        path=path,
        query=_query(query),
        headers=_headers(header_lines),
        remote=peer[0] if isinstance(peer, tuple) else None,
        reader=reader,
        writer=writer,
    )


def _headers(lines: list[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        # no folded lines, no space before the colon (RFC 9112: a request smuggler's tools)
        if not colon or not _TOKEN.fullmatch(name):
            raise HttpError(400, "malformed header line\n")
        headers.setdefault(name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1"))
    return headers


def _query(text: str) -> dict[str, str]:
    query: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        query.setdefault(name, value)
    return query


class HttpServer:
    """Listens, reads each connection's request and passes it to ``handler``."""

    def __init__(self, handler: Handler, *, head_timeout_s: float = HEAD_TIMEOUT_S) -> None:
        self._handler = handler
        self._head_timeout_s = head_timeout_s
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None) -> int:
        """Listen on ``host:port`` (over TLS with ``ssl_context``); the port listened on."""
        self._server = await asyncio.start_server(
            self._serve, host, port, ssl=ssl_context, limit=MAX_HEAD_BYTES
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
        # Dropping a connection ends its task's reads and writes; its handler returns.
        for writer in self._connections.values():
            writer.transport.abort()
        tasks = list(self._connections)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
            for task in pending:  # a handler busy elsewhere (a log read in a thread)
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        sock = writer.get_extra_info("socket")
        if sock is not None:  # notice a driver whose machine vanished, as aiohttp did
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        answered = False
        try:
            await self._answer(reader, writer)
            answered = True
        except (OSError, EOFError, TimeoutError) as exc:  # reading or writing the socket
            log.debug("connection dropped: %r", exc)  # the client's doing: no traceback
        except Exception:
            log.exception("internal error answering a request")
        except asyncio.CancelledError:
            # only close() cancels this task, and nothing awaits its outcome; ending it
            # cancelled would make asyncio log an "unhandled exception" for each connection
            pass
        finally:
            self._connections.pop(task, None)
            if answered:
                writer.close()
            else:  # what is left unsent may never be read: do not wait for it
                writer.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._head_timeout_s):
                request = await read_request(reader, writer)
        except HttpError as exc:
            log.debug("bad request: %s", exc)
            await _refuse(reader, writer, exc)
            return
        try:
            await self._handler(request)
            if not request.answered:
                raise RuntimeError("the handler returned without an answer")
        except HttpError as exc:
            if not request.answered:
                await request.respond(exc.status, exc.text, headers=exc.headers)
        except (ConnectionError, EOFError, TimeoutError, ssl.SSLError):
            raise  # the client went, stalled or broke its TLS: dropped without a word
        except Exception:  # ours (a log we cannot read, a bug): say so, and log where
            log.exception("internal error answering %s %s", request.method, request.path)
            if not request.answered:
                await request.respond(500, "internal error\n")


async def _refuse(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, error: HttpError
) -> None:
    """Answer a request that could not be read, then take in what the client still sends.

    Closing a socket with unread input makes the kernel send a reset, which can destroy the
    answer before the client has read it (an oversized head is never read to its end).
    """
    await write_response(writer, error.status, error.text, headers=error.headers)
    if writer.can_write_eof():
        writer.write_eof()
    try:
        async with asyncio.timeout(LINGER_S):
            while await reader.read(MAX_HEAD_BYTES):
                pass
    except TimeoutError:
        pass
