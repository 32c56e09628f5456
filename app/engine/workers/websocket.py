"""A small WebSocket client (RFC 6455) for the driver's connection to a worker.

It speaks what the worker's server speaks and no more: one upgrade request with a bearer
token, text frames, ping/pong and close, no extensions. It replaces aiohttp's client on this
path, whose import (with two CA bundles read to build its default TLS contexts) was a quarter
of `labbatch run`'s start-up; a worker's certificate is pinned, so no CA is ever consulted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
import struct

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSED = -1  # what receive() returns once the connection is gone
CLOSE_NORMAL, CLOSE_TOO_BIG, CLOSE_NO_STATUS = 1000, 1009, 1005
_MAX_HEADER_BYTES = 64 * 1024


class HandshakeError(Exception):
    """The server did not upgrade the connection (a wrong token answers 401)."""


class FingerprintMismatchError(Exception):
    """The server's certificate is not the pinned one."""


class WebSocket:
    """One client connection. ``receive`` is called by one reader at a time; ``send_text``
    may be called from any task (each frame is one write, so frames never interleave)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_size: int
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_size = max_size
        self._close_sent = False
        self._gone = asyncio.Event()  # the reader saw the end
        self.close_code: int | None = None

    @property
    def closed(self) -> bool:
        return self._close_sent or self._gone.is_set() or self._writer.is_closing()

    @classmethod
    async def connect(
        cls,
        address: str,
        path: str,
        headers: dict[str, str],
        *,
        tls_sha256: str | None,
        connect_timeout_s: float,
        max_size: int,
    ) -> WebSocket:
        """Dial ``address`` (host:port), over TLS accepting only the certificate whose SHA-256
        is ``tls_sha256`` when given, and upgrade ``path``. The caller bounds the whole."""
        host, port = _split(address)
        async with asyncio.timeout(connect_timeout_s):  # the TCP connect alone
            reader, writer = await asyncio.open_connection(host, port)
        try:
            if tls_sha256:
                await writer.start_tls(_pinning_context())
                _check_pin(writer, tls_sha256)
            key = base64.b64encode(os.urandom(16)).decode()
            lines = [
                f"GET {path} HTTP/1.1",
                f"Host: {address}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
                *(f"{name}: {value}" for name, value in headers.items()),
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            _check_upgrade(await _read_head(reader), key)
        except BaseException:
            writer.transport.abort()
            raise
        return cls(reader, writer, max_size)

    async def receive(self) -> tuple[int, bytes]:
        """The next text or binary message as (opcode, payload); (OP_CLOSE, b"") once the
        server closed (its code in ``close_code``); (CLOSED, b"") once the connection is
        gone. Pings are answered here."""
        if self._gone.is_set():
            return CLOSED, b""
        try:
            return await self._next_message()
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError):
            self._end()
            return CLOSED, b""

    async def _next_message(self) -> tuple[int, bytes]:
        parts: list[bytes] = []
        first_opcode = OP_TEXT
        while True:
            fin, opcode, data = await self._read_frame(sum(map(len, parts)))
            if opcode == OP_PING:
                await self._send_frame(OP_PONG, data)
            elif opcode == OP_CLOSE:
                self.close_code = (
                    struct.unpack("!H", data[:2])[0] if len(data) >= 2 else CLOSE_NO_STATUS
                )
                if not self._close_sent:
                    await self._send_close(self.close_code)
                self._end()
                return OP_CLOSE, b""
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                if opcode != OP_CONTINUATION:
                    parts, first_opcode = [], opcode
                parts.append(data)
                if fin:
                    return first_opcode, b"".join(parts)
            # a pong, or an opcode this client does not know: skipped

    async def _read_frame(self, so_far: int) -> tuple[bool, int, bytes]:
        b0, b1 = await self._reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._reader.readexactly(8))
        if so_far + length > self._max_size:
            await self._send_close(CLOSE_TOO_BIG)
            raise ValueError(f"a message over {self._max_size} bytes")
        mask = await self._reader.readexactly(4) if b1 & 0x80 else b""
        data = await self._reader.readexactly(length)
        return bool(b0 & 0x80), b0 & 0x0F, _masked(data, mask) if mask else data

    async def send_text(self, text: str) -> None:
        """Send one text frame; raises ConnectionError once the connection is closed."""
        if self.closed:
            raise ConnectionError("the WebSocket is closed")
        await self._send_frame(OP_TEXT, text.encode())

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)  # a client masks every frame (RFC 6455, 5.3)
        self._writer.write(head + mask + _masked(payload, mask))
        await self._writer.drain()

    async def _send_close(self, code: int) -> None:
        if self._close_sent or self._writer.is_closing():
            return
        self._close_sent = True
        try:
            await self._send_frame(OP_CLOSE, struct.pack("!H", code))
        except (OSError, RuntimeError):
            self._end()

    async def close(self, *, timeout_s: float = 2.0, reader: bool = False) -> None:
        """Say goodbye and wait up to ``timeout_s`` for the server's reply (read by the
        ``reader`` task if the caller has one, else here), then drop the connection."""
        await self._send_close(CLOSE_NORMAL)
        try:
            async with asyncio.timeout(timeout_s):
                if reader:
                    await self._gone.wait()
                while not self._gone.is_set():  # nobody reads: take what is left, to its end
                    await self.receive()
        except TimeoutError:
            pass
        self._end()

    def abort(self) -> None:
        """Drop the connection at once, saying nothing (the reader saw its end)."""
        self._end()

    def _end(self) -> None:
        self._gone.set()
        if not self._writer.is_closing():
            self._writer.close()


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _pinning_context() -> ssl.SSLContext:
    # No CA can vouch for a VM's fresh address; the pin below is the whole check.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _check_pin(writer: asyncio.StreamWriter, tls_sha256: str) -> None:
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if der is None or hashlib.sha256(der).hexdigest() != tls_sha256.lower():
        raise FingerprintMismatchError("the server's certificate is not the pinned one")


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise HandshakeError("the server's answer has headers over 64 KiB") from exc


def _check_upgrade(head: bytes, key: str) -> None:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise HandshakeError(f"not an HTTP answer: {status_line[:80]!r}")
    status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
    if status != 101:
        raise HandshakeError(f"{status}, message={reason!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    expected = base64.b64encode(
        hashlib.sha1(key.encode() + _ACCEPT_GUID, usedforsecurity=False).digest()
    ).decode()
    if headers.get("sec-websocket-accept") != expected:
        raise HandshakeError("the server's Sec-WebSocket-Accept does not answer our key")


def _masked(data: bytes, mask: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``mask`` (one big-integer XOR, not a byte loop)."""
    n = len(data)
    if not n:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
