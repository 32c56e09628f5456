"""The driver's WebSocket to one worker: dial with the token, read frames, send frames."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.engine.workers.websocket import (
    OP_CLOSE,
    OP_TEXT,
    FingerprintMismatchError,
    HandshakeError,
    WebSocket,
)
from app.protocol import REPLACED_CLOSE_CODE, WS_PATH, Message, ProtocolError, bearer, decode

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("labbatch.connection")
_ids = itertools.count(1)
DIAL_TIMEOUT_S = 5.0  # TCP connect
DIAL_TOTAL_TIMEOUT_S = 10.0  # connect, TLS handshake and WebSocket upgrade together
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def worker_url(address: str, path: str, tls_sha256: str | None) -> str:
    """The URL of ``path`` on a worker: https for cloud workers (which have a pinned
    certificate), plain http for local ones on 127.0.0.1."""
    return f"{'https' if tls_sha256 else 'http'}://{address}{path}"


def pinned(tls_sha256: str | None) -> aiohttp.Fingerprint | bool:
    """What aiohttp checks of the worker's certificate: exactly the one the driver made for
    it (no CA can vouch for a VM's fresh address), or nothing without TLS. For the HTTP calls
    (logs, health probes) that go through aiohttp; the driver's WebSocket pins on its own."""
    import aiohttp  # not on `labbatch run`'s path: its import reads two CA bundles

    return aiohttp.Fingerprint(bytes.fromhex(tls_sha256)) if tls_sha256 else True


class DialError(Exception):
    """The worker could not be reached, or refused the token."""


class WorkerConnection:
    """One open WebSocket to a worker; frames go to ``on_message``, the end to ``on_closed``."""

    def __init__(self, instance_name: str, ws: WebSocket) -> None:
        self.id = next(_ids)
        self.instance_name = instance_name
        self._ws = ws
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def dial(
        cls, instance_name: str, address: str, token: str, *, tls_sha256: str | None = None
    ) -> WorkerConnection:
        """Open the WebSocket; with ``tls_sha256`` over TLS, accepting only that certificate."""
        try:
            # DIAL_TIMEOUT_S bounds only the TCP connect: a worker that accepts and then stalls
            # (a booting VM, a loaded machine) must not hold the dial, and its boot, forever
            async with asyncio.timeout(DIAL_TOTAL_TIMEOUT_S):
                ws = await WebSocket.connect(
                    address,
                    WS_PATH,
                    {"Authorization": bearer(token)},
                    tls_sha256=tls_sha256,
                    connect_timeout_s=DIAL_TIMEOUT_S,
                    max_size=MAX_MESSAGE_BYTES,
                )
        except FingerprintMismatchError as exc:
            raise DialError(
                f"worker {instance_name} at {address} presented another certificate than the "
                "one LabBatch made for it; not connecting"
            ) from exc
        except (HandshakeError, OSError, EOFError, TimeoutError, ValueError) as exc:
            reason = str(exc) or f"no answer within {DIAL_TOTAL_TIMEOUT_S:.0f}s"
            if isinstance(exc, EOFError):
                reason = "it closed the connection during the upgrade"
            raise DialError(f"cannot reach worker {instance_name} at {address}: {reason}") from exc
        return cls(instance_name, ws)

    def start(
        self,
        on_message: Callable[[WorkerConnection, Message], None],
        on_closed: Callable[[WorkerConnection], None],
    ) -> None:
        self._reader = asyncio.ensure_future(self._read(on_message, on_closed))
        self._reader.set_name(f"connection-{self.instance_name}")

    async def _read(
        self,
        on_message: Callable[[WorkerConnection, Message], None],
        on_closed: Callable[[WorkerConnection], None],
    ) -> None:
        try:
            while True:
                opcode, data = await self._ws.receive()
                if opcode != OP_TEXT:
                    if opcode < 0 or opcode == OP_CLOSE:
                        break
                    continue
                try:
                    message = decode(data.decode())
                except (ProtocolError, UnicodeDecodeError) as exc:
                    log.warning("worker %s sent a bad frame: %s", self.instance_name, exc)
                    continue
                on_message(self, message)
            if self._ws.close_code == REPLACED_CLOSE_CODE:
                log.warning(
                    "worker %s closed this driver's connection: another process holding its "
                    "token connected to it",
                    self.instance_name,
                )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._ws.abort()
            on_closed(self)

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, message: Message) -> bool:
        """Send one frame; False if the connection is gone."""
        if self._ws.closed:
            return False
        try:
            await self._ws.send_text(message.to_json())
            return True
        except (OSError, RuntimeError):  # ConnectionError is an OSError
            return False

    async def close(self) -> None:
        """Close (waiting up to 2 s for the worker's reply) and stop the reader."""
        if self._reader is None:  # never started: the close reads the worker's reply itself
            await self._ws.close()
            return
        await self._ws.close(reader=True)
        await asyncio.gather(self._reader, return_exceptions=True)
