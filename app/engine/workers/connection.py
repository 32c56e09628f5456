"""The driver's WebSocket to one worker: dial with the token, read frames, send frames."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

import aiohttp

from app.protocol import REPLACED_CLOSE_CODE, WS_PATH, Message, ProtocolError, bearer, decode

log = logging.getLogger("labbatch.connection")
_ids = itertools.count(1)
DIAL_TIMEOUT_S = 5.0  # TCP connect
DIAL_TOTAL_TIMEOUT_S = 10.0  # connect, TLS handshake and WebSocket upgrade together
_CLOSING = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


def worker_url(address: str, path: str, tls_sha256: str | None) -> str:
    """The URL of ``path`` on a worker: https for cloud workers (which have a pinned
    certificate), plain http for local ones on 127.0.0.1."""
    return f"{'https' if tls_sha256 else 'http'}://{address}{path}"


def pinned(tls_sha256: str | None) -> aiohttp.Fingerprint | bool:
    """What aiohttp checks of the worker's certificate: exactly the one the driver made for
    it (no CA can vouch for a VM's fresh address), or nothing without TLS."""
    return aiohttp.Fingerprint(bytes.fromhex(tls_sha256)) if tls_sha256 else True


class DialError(Exception):
    """The worker could not be reached, or refused the token."""


class WorkerConnection:
    """One open WebSocket to a worker; frames go to ``on_message``, the end to ``on_closed``."""

    def __init__(
        self,
        instance_name: str,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
    ) -> None:
        self.id = next(_ids)
        self.instance_name = instance_name
        self._ws = ws
        self._session = session
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def dial(
        cls, instance_name: str, address: str, token: str, *, tls_sha256: str | None = None
    ) -> WorkerConnection:
        """Open the WebSocket; with ``tls_sha256`` over TLS, accepting only that certificate."""
        # a worker that does not answer must not hang the driver: bound the connect
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=DIAL_TIMEOUT_S)
        session = aiohttp.ClientSession(timeout=timeout)
        try:
            # sock_connect bounds only the TCP connect: a worker that accepts and then stalls
            # (a booting VM, a loaded machine) must not hold the dial, and its boot, forever
            async with asyncio.timeout(DIAL_TOTAL_TIMEOUT_S):
                ws = await session.ws_connect(
                    worker_url(address, WS_PATH, tls_sha256),
                    ssl=pinned(tls_sha256),
                    headers={"Authorization": bearer(token)},
                    heartbeat=None,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                    max_msg_size=64 * 1024 * 1024,
                    autoping=True,
                )
        except aiohttp.ServerFingerprintMismatch as exc:
            await session.close()
            raise DialError(
                f"worker {instance_name} at {address} presented another certificate than the "
                "one LabBatch made for it; not connecting"
            ) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await session.close()
            reason = str(exc) or f"no answer within {DIAL_TOTAL_TIMEOUT_S:.0f}s"
            raise DialError(f"cannot reach worker {instance_name} at {address}: {reason}") from exc
        except asyncio.CancelledError:  # the driver stopped while dialling
            await asyncio.shield(session.close())
            raise
        return cls(instance_name, ws, session)

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
            while (frame := await self._ws.receive()).type not in _CLOSING:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    message = decode(frame.data)
                except ProtocolError as exc:
                    log.warning("worker %s sent a bad frame: %s", self.instance_name, exc)
                    continue
                on_message(self, message)
            if frame.type == aiohttp.WSMsgType.CLOSE and frame.data == REPLACED_CLOSE_CODE:
                log.warning(
                    "worker %s closed this driver's connection: another process holding its "
                    "token connected to it",
                    self.instance_name,
                )
        except (aiohttp.ClientError, OSError, asyncio.CancelledError):
            pass
        finally:
            await self._session.close()
            on_closed(self)

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, message: Message) -> bool:
        """Send one frame; False if the connection is gone."""
        if self._ws.closed:
            return False
        try:
            await self._ws.send_str(message.to_json())
            return True
        except (aiohttp.ClientError, OSError, ConnectionError, RuntimeError):
            return False

    async def close(self) -> None:
        await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._session.close()
