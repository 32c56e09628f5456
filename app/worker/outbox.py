"""Frames to the driver, coalesced: one Completed and one Started frame per event-loop turn."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging

from aiohttp import web

from app.protocol import MAX_LOG_BYTES, Completed, JobResult, JobStart, Message, Started

log = logging.getLogger("labbatch.worker")

# Completed frames are cut so their logs add up to at most this, keeping frames a driver
# can take with its default message size.
FRAME_LOG_BUDGET_BYTES = MAX_LOG_BYTES


class Outbox:
    """Buffers worker -> driver messages; a single sender task writes them to the socket.

    Everything buffered while the sender waits for its next turn goes out together, so a
    burst of 500 completions costs a few frames. With no driver attached nothing is buffered:
    the next Hello carries the job table's state instead.
    """

    def __init__(self) -> None:
        self._started: list[JobStart] = []
        self._ended: list[JobResult] = []
        self._other: list[Message] = []
        # The driver socket, set while its Hello is being sent; frames flow once it is open.
        self._ws: web.WebSocketResponse | None = None
        self._open = False
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the sender task."""
        self._sender = asyncio.create_task(self._send_forever(), name="worker-outbox")

    async def stop(self) -> None:
        """Stop the sender task."""
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

    def job_started(self, start: JobStart) -> None:
        if self._ws is not None:
            self._started.append(start)
            self._wake.set()

    def job_ended(self, result: JobResult) -> None:
        if self._ws is not None:
            self._ended.append(result)
            self._wake.set()

    def send(self, message: Message) -> None:
        """Queue a message other than started/completed."""
        if self._ws is not None:
            self._other.append(message)
            self._wake.set()

    def begin_attach(self, ws: web.WebSocketResponse) -> None:
        """Buffer for ``ws`` afresh: the Hello about to be built covers everything before."""
        self._clear()
        self._ws, self._open = ws, False

    def open(self, ws: web.WebSocketResponse) -> None:
        """``ws`` got its Hello: send what was buffered since, and everything after."""
        if self._ws is ws:
            self._open = True
            self._wake.set()

    def detach(self, ws: web.WebSocketResponse) -> None:
        """Stop buffering and sending for ``ws`` if it is the current socket."""
        if self._ws is ws:
            self._ws, self._open = None, False
            self._clear()

    def _clear(self) -> None:
        self._started.clear()
        self._ended.clear()
        self._other.clear()

    async def flush(self) -> None:
        """Send everything buffered now."""
        async with self._send_lock:
            ws = self._ws
            if ws is None or not self._open:
                return
            frames = self._take_frames()
            try:
                for frame in frames:
                    await ws.send_str(frame)
            except (ConnectionError, RuntimeError) as exc:
                # The results stay in the job table and go in the next Hello.
                log.info("driver connection lost while sending: %s", exc)
                self.detach(ws)

    async def _send_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    def _take_frames(self) -> list[str]:
        # Completed goes first so a driver counting free cores never sees more running than
        # fit; an attempt that started and ended within this batch is only in Completed.
        ended_keys = {(r.batch_id, r.job_id, r.attempt) for r in self._ended}
        started = [s for s in self._started if (s.batch_id, s.job_id, s.attempt) not in ended_keys]
        frames = [encode_jobs(Completed(jobs=chunk)) for chunk in _chunks_by_log(self._ended)]
        if started:
            frames.append(encode_jobs(Started(jobs=started)))
        frames += [message.to_json() for message in self._other]
        self._other, self._started, self._ended = [], [], []
        return frames


def encode_jobs(message: Started | Completed) -> str:
    """The same text as ``message.to_json()``, built by a shallow walk of the flat items."""
    # dataclasses.asdict deep-copies every field and was the top Python cost per job.
    body = {"jobs": [_shallow(job) for job in message.jobs], "type": message.type}
    return json.dumps(body, separators=(",", ":"))


def _shallow(item: JobStart | JobResult) -> dict[str, object]:
    names = _FIELD_NAMES.get(type(item))
    if names is None:
        names = _FIELD_NAMES[type(item)] = tuple(f.name for f in dataclasses.fields(item))
    return {name: getattr(item, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _chunks_by_log(results: list[JobResult]) -> list[list[JobResult]]:
    chunks: list[list[JobResult]] = []
    chunk: list[JobResult] = []
    log_chars = 0
    for result in results:
        if chunk and log_chars + len(result.log) > FRAME_LOG_BUDGET_BYTES:
            chunks.append(chunk)
            chunk, log_chars = [], 0
        chunk.append(result)
        log_chars += len(result.log)
    if chunk:
        chunks.append(chunk)
    return chunks
