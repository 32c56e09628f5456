"""The agent's HTTP face: health, the authenticated driver WebSocket and job logs."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
from pathlib import Path

from app.protocol import HEALTH_PATH, LOG_PATH, PROTOCOL_VERSION, WS_PATH, ProtocolError, bearer
from app.protocol import decode as decode_message
from app.worker.agent import WorkerAgent
from app.worker.http import HttpError, Request
from app.worker.websocket import WebSocket

log = logging.getLogger("labbatch.worker")

# LOG_PATH with each {name} a path segment: "/api/v1/log/(?P<batch_id>[^/]+)/..."
_LOG_ROUTE = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", LOG_PATH))
MAX_LOG_CHUNK_BYTES = 1 << 20


class AgentRoutes:
    """Answers the agent's routes: GET only, the token checked where one is needed."""

    def __init__(self, agent: WorkerAgent, token: str) -> None:
        self._agent = agent
        self._expected_auth = bearer(token).encode()

    async def __call__(self, request: Request) -> None:
        if request.path == HEALTH_PATH:
            route = self._health
        elif request.path == WS_PATH:
            route = self._connect
        elif _LOG_ROUTE.fullmatch(request.path):
            route = self._job_log
        else:
            raise _not_found()
        if request.method != "GET":
            raise HttpError(405, "405: Method Not Allowed", headers={"Allow": "GET"})
        await route(request)

    def _authorized(self, request: Request) -> bool:
        presented = request.headers.get("authorization")
        return presented is not None and _matches(presented, self._expected_auth)

    def _check_token(self, request: Request) -> None:
        """Raise the 401 unless the request carries the token (logged, token-free)."""
        if self._authorized(request):
            return
        why = "no token" if "authorization" not in request.headers else "bad token"
        log.warning("refused connection from %s: %s", request.remote, why)
        raise HttpError(401, "unauthorized\n")

    async def _health(self, request: Request) -> None:
        """Up or not for anyone; the name and load only for the driver (they help an attacker
        pick a target and tell when it is busy)."""
        body: dict[str, object] = {"version": PROTOCOL_VERSION}
        if self._authorized(request):
            agent = self._agent
            body |= {"name": agent.config.name, "n_running": agent.jobs.n_running}
        await request.respond(200, json.dumps(body), content_type="application/json; charset=utf-8")

    async def _connect(self, request: Request) -> None:
        self._check_token(request)
        agent = self._agent
        ws = await WebSocket.accept(request)
        if agent.stopping:
            await ws.close(code=1001, message=b"worker exiting")
            return
        log.info("driver connected from %s", request.remote)
        try:
            await agent.attach(ws, remote=request.remote)
            await _receive(agent, ws)
        except (ConnectionError, RuntimeError) as exc:
            log.info("driver connection failed: %s", exc)
        finally:
            agent.detach(ws)

    async def _job_log(self, request: Request) -> None:
        self._check_token(request)
        match = _LOG_ROUTE.fullmatch(request.path)
        assert match is not None
        try:
            key = tuple(int(match[k]) for k in ("batch_id", "job_id", "attempt"))
        except ValueError:
            raise _not_found() from None
        path = self._agent.jobs.log_path(*key)
        offset = request.query.get("offset")
        if offset is not None:
            # a follower reads the bytes it has not seen yet, undecoded (a character may be split)
            if not (offset.isascii() and offset.isdigit()):
                raise HttpError(400, "offset must be a byte count\n")
            try:
                data = await asyncio.to_thread(_read_from, path, int(offset))
            except FileNotFoundError:
                raise HttpError(404, "no log for that attempt\n") from None
            await request.respond(200, data, content_type="application/octet-stream")
            return
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
        except FileNotFoundError:
            raise HttpError(404, "no log for that attempt\n") from None
        await request.respond(200, data.decode("utf-8", errors="replace"))


def _matches(presented: str, expected: bytes) -> bool:
    # constant-time; header values were read as latin-1, so any of them encodes back
    return hmac.compare_digest(presented.encode("latin-1"), expected)


def _not_found() -> HttpError:
    return HttpError(404, "404: Not Found")


async def _receive(agent: WorkerAgent, ws: WebSocket) -> None:
    while (message := await ws.receive()) is not None:
        if isinstance(message, bytes):
            log.warning("ignoring a non-text frame of type BINARY")
            continue
        try:
            decoded = decode_message(message)
        except ProtocolError as exc:
            log.warning("ignoring a malformed frame: %s", exc)
            continue
        agent.handle(decoded)


def _read_from(path: str, offset: int) -> bytes:
    with open(path, "rb") as f:
        if offset >= os.fstat(f.fileno()).st_size:
            return b""  # nothing new yet (an offset past any file size cannot be seeked to)
        f.seek(offset)
        return f.read(MAX_LOG_CHUNK_BYTES)
