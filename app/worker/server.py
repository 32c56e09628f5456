"""The agent's HTTP face: health, the authenticated driver WebSocket and job logs."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from pathlib import Path

from aiohttp import WSMsgType, web

from app.protocol import HEALTH_PATH, LOG_PATH, PROTOCOL_VERSION, WS_PATH, ProtocolError, bearer
from app.protocol import decode as decode_message
from app.worker.agent import WorkerAgent

log = logging.getLogger("labbatch.worker")

_AGENT = web.AppKey("agent", WorkerAgent)
_EXPECTED_AUTH = web.AppKey("expected_auth", bytes)


def build_app(agent: WorkerAgent, token: str) -> web.Application:
    """The aiohttp application serving one agent."""
    app = web.Application()
    app[_AGENT] = agent
    app[_EXPECTED_AUTH] = bearer(token).encode()
    app.router.add_get(HEALTH_PATH, _health)
    app.router.add_get(WS_PATH, _connect)
    app.router.add_get(LOG_PATH, _job_log)
    return app


def _refusal(request: web.Request) -> web.Response | None:
    """None if the request carries the token, else the 401 to answer (logged, token-free)."""
    presented = request.headers.get("Authorization")
    if presented is not None and _matches(presented, request.app[_EXPECTED_AUTH]):
        return None
    why = "no token" if presented is None else "bad token"
    log.warning("refused connection from %s: %s", request.remote, why)
    return web.Response(status=401, text="unauthorized\n")


def _matches(presented: str, expected: bytes) -> bool:
    try:
        presented_bytes = presented.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(presented_bytes, expected)


async def _health(request: web.Request) -> web.Response:
    """Up or not for anyone; the name and load only for the driver (they help an attacker
    pick a target and tell when it is busy)."""
    body: dict[str, object] = {"version": PROTOCOL_VERSION}
    presented = request.headers.get("Authorization")
    if presented is not None and _matches(presented, request.app[_EXPECTED_AUTH]):
        agent = request.app[_AGENT]
        body |= {"name": agent.config.name, "n_running": agent.jobs.n_running}
    return web.json_response(body)


async def _connect(request: web.Request) -> web.StreamResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    agent = request.app[_AGENT]
    # Schedule frames for hundreds of jobs can be large; the peer is authenticated.
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    if agent.stopping:
        await ws.close(code=1001, message=b"worker exiting")
        return ws
    log.info("driver connected from %s", request.remote)
    try:
        await agent.attach(ws, remote=request.remote)
        await _receive(agent, ws)
    except (ConnectionError, RuntimeError) as exc:
        log.info("driver connection failed: %s", exc)
    finally:
        agent.detach(ws)
    return ws


async def _receive(agent: WorkerAgent, ws: web.WebSocketResponse) -> None:
    async for frame in ws:
        if frame.type is not WSMsgType.TEXT:
            log.warning("ignoring a non-text frame of type %s", frame.type.name)
            continue
        try:
            message = decode_message(frame.data)
        except ProtocolError as exc:
            log.warning("ignoring a malformed frame: %s", exc)
            continue
        agent.handle(message)


async def _job_log(request: web.Request) -> web.Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    try:
        key = tuple(int(request.match_info[k]) for k in ("batch_id", "job_id", "attempt"))
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    path = request.app[_AGENT].jobs.log_path(*key)
    offset = request.query.get("offset")
    if offset is not None:
        # a follower reads the bytes it has not seen yet, undecoded (a character may be split)
        if not offset.isdigit():
            raise web.HTTPBadRequest(text="offset must be a byte count\n")
        try:
            data = await asyncio.to_thread(_read_from, path, int(offset))
        except FileNotFoundError as exc:
            raise web.HTTPNotFound(text="no log for that attempt\n") from exc
        return web.Response(body=data, content_type="application/octet-stream")
    try:
        data = await asyncio.to_thread(Path(path).read_bytes)
    except FileNotFoundError as exc:
        raise web.HTTPNotFound(text="no log for that attempt\n") from exc
    return web.Response(text=data.decode("utf-8", errors="replace"), content_type="text/plain")


MAX_LOG_CHUNK_BYTES = 1 << 20


def _read_from(path: str, offset: int) -> bytes:
    with open(path, "rb") as f:
        if offset >= os.fstat(f.fileno()).st_size:
            return b""  # nothing new yet (an offset past any file size cannot be seeked to)
        f.seek(offset)
        return f.read(MAX_LOG_CHUNK_BYTES)
