"""The server end of the driver's WebSocket (RFC 6455), on the connection app.worker.http read.

It speaks what the driver's client (app.engine.workers.websocket) speaks: one upgrade, text
messages (fragmented or not), ping/pong and the close handshake, no extensions. A frame the
protocol forbids (unmasked, reserved bits, a bad control frame) closes the connection with
1002; a message over the cap with 1009; text that is not UTF-8 with 1007.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import struct

from app.worker.http import HttpError, Request

log = logging.getLogger("labbatch.worker")

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_NO_STATUS = 1000, 1002, 1005
CLOSE_BAD_DATA, CLOSE_TOO_BIG = 1007, 1009
# Schedule frames for hundreds of jobs can be large and the peer is authenticated: the cap
# only keeps a broken driver from filling the memory.
MAX_MESSAGE_BYTES = 256 << 20
CLOSE_TIMEOUT_S = 10.0  # how long close() waits for the driver's reply (aiohttp's default)
LINGER_S = 1.0  # how long a connection failed for a bad frame takes in what is still coming


class _ProtocolViolation(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class WebSocket:
    """One driver connection. One task calls ``receive``; ``send_str`` and ``close`` may be
    called from any task (each frame is one write, so frames never interleave)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_message_bytes = max_message_bytes
        self._close_sent = False
        self._reading = False
        self._gone = asyncio.Event()  # the connection ended (close handshake done, or lost)
        self.close_code: int | None = None  # what the driver's close frame said

    @classmethod
    async def accept(
        cls, request: Request, *, max_message_bytes: int = MAX_MESSAGE_BYTES
    ) -> WebSocket:
        """Answer the upgrade with 101; HttpError (400, 426) if it is not a valid one."""
        headers = request.headers
        if "websocket" not in _tokens(headers.get("upgrade", "")):
            raise HttpError(400, "expected Upgrade: websocket\n")
        if "upgrade" not in _tokens(headers.get("connection", "")):
            raise HttpError(400, "expected Connection: upgrade\n")
        if headers.get("sec-websocket-version") != "13":
            raise HttpError(
                426, "only WebSocket version 13\n", headers={"Sec-WebSocket-Version": "13"}
            )
        key = headers.get("sec-websocket-key", "")
        try:
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except binascii.Error:
            valid_key = False
        if not valid_key:
            raise HttpError(400, "bad Sec-WebSocket-Key\n")
        digest = hashlib.sha1(key.encode() + _ACCEPT_GUID, usedforsecurity=False).digest()
        request.answered = True
        request.writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n"
        )
        await request.writer.drain()
        return cls(request.reader, request.writer, max_message_bytes=max_message_bytes)

    @property
    def closed(self) -> bool:
        return self._close_sent or self._gone.is_set() or self._writer.is_closing()

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the connection has ended. Pings are answered here;
        messages that arrive after this end sent its close frame are dropped."""
        self._reading = True
        try:
            while not self._gone.is_set():
                message = await self._next_message()
                if message is not None and not self._close_sent:
                    return message
        except _ProtocolViolation as exc:
            log.warning("closing the driver connection: %s", exc)
            await self._fail(exc.code, str(exc))
        except (OSError, EOFError, RuntimeError):  # reset, or gone before a whole frame
            self._end(abort=True)
        finally:
            self._reading = False
        return None

    async def _next_message(self) -> str | bytes | None:
        """One whole message (pings answered, pongs skipped); None after a close frame."""
        parts: list[bytes] = []
        first_opcode: int | None = None
        while True:
            fin, opcode, data = await self._read_frame(sum(map(len, parts)))
            if opcode == OP_PING:
                if not self._close_sent:  # nothing may follow a close frame
                    await self._send_frame(OP_PONG, data)
            elif opcode == OP_PONG:
                pass
            elif opcode == OP_CLOSE:
                code = self._on_close_frame(data)
                if not self._close_sent:  # the driver started it: answer with its code
                    await self._send_close(CLOSE_NORMAL if code == CLOSE_NO_STATUS else code)
                self._end()
                return None
            elif (opcode == OP_CONTINUATION) == (first_opcode is None):
                raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "a fragment out of sequence")
            else:
                first_opcode = opcode if first_opcode is None else first_opcode
                parts.append(data)
                if fin:
                    return _message(first_opcode, b"".join(parts))

    async def _read_frame(self, so_far: int) -> tuple[bool, int, bytes]:
        b0, b1 = await self._reader.readexactly(2)
        opcode, length = b0 & 0x0F, b1 & 0x7F
        if b0 & 0x70:
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extensions)")
        if not b1 & 0x80:
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "an unmasked frame from a client")
        if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if opcode >= OP_CLOSE and (length > 125 or not b0 & 0x80):
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "a long or fragmented control frame")
        if length == 126:
            (length,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._reader.readexactly(8))
        if so_far + length > self._max_message_bytes:
            raise _ProtocolViolation(
                CLOSE_TOO_BIG, f"a message over {self._max_message_bytes} bytes"
            )
        mask = await self._reader.readexactly(4)
        data = await self._reader.readexactly(length)
        return bool(b0 & 0x80), opcode, _unmasked(data, mask)

    def _on_close_frame(self, data: bytes) -> int:
        if len(data) == 1:
            raise _ProtocolViolation(CLOSE_PROTOCOL_ERROR, "a close frame with half a code")
        code: int = struct.unpack("!H", data[:2])[0] if data else CLOSE_NO_STATUS
        self.close_code = code
        return code

    async def send_str(self, text: str) -> None:
        """Send one text frame; ConnectionResetError once the connection is closing."""
        if self.closed:
            raise ConnectionResetError("the driver connection is closed")
        await self._send_frame(OP_TEXT, text.encode())

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self._writer.write(head + payload)  # a server never masks (RFC 6455, 5.1)
        await self._writer.drain()

    async def _send_close(self, code: int, message: bytes = b"") -> None:
        if self._close_sent or self._writer.is_closing():
            return
        self._close_sent = True
        try:
            await self._send_frame(OP_CLOSE, struct.pack("!H", code) + message[:123])
        except (OSError, RuntimeError):
            self._end(abort=True)

    async def close(self, *, code: int = CLOSE_NORMAL, message: bytes = b"") -> None:
        """Send a close frame (once) and end the connection.

        With a task reading, the connection ends at once and so does that task's loop (as
        aiohttp's server did): a driver that has stopped reading cannot hold up a shutdown.
        Without one, the driver's reply is awaited here for up to CLOSE_TIMEOUT_S.
        """
        await self._send_close(code, message)
        if not self._reading:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    while not self._gone.is_set():
                        await self.receive()
            except TimeoutError:
                log.info("the driver did not answer the close within %gs", CLOSE_TIMEOUT_S)
        self._end()

    async def _fail(self, code: int, reason: str) -> None:
        """Send the close frame, then take in (and drop) what the peer still sends, briefly:
        closing a socket with unread input resets it, which can lose the close frame."""
        await self._send_close(code, reason.encode()[:123])
        if self._writer.can_write_eof() and not self._writer.is_closing():
            self._writer.write_eof()
        try:
            async with asyncio.timeout(LINGER_S):
                while await self._reader.read(1 << 16):
                    pass
        except (TimeoutError, OSError):
            pass
        self._end()

    def _end(self, *, abort: bool = False) -> None:
        """The connection is over: close it (after what is buffered), or drop it at once."""
        self._gone.set()
        if abort:
            self._writer.transport.abort()
        elif not self._writer.is_closing():
            self._writer.close()


def _message(opcode: int, data: bytes) -> str | bytes:
    if opcode == OP_BINARY:
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _ProtocolViolation(CLOSE_BAD_DATA, "a text message that is not UTF-8") from None


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def _unmasked(data: bytes, mask: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``mask`` (one big-integer XOR, not a byte loop)."""
    n = len(data)
    if not n:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
