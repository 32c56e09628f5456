"""The agent: one driver connection at a time, the job table, heartbeats and the exit rules."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from app.protocol import (
    PROTOCOL_VERSION,
    REPLACED_CLOSE_CODE,
    Ack,
    Cancel,
    Heartbeat,
    Hello,
    JobResult,
    JobStart,
    Message,
    Retiring,
    Schedule,
    Shutdown,
)
from app.worker.attempt import SHUTDOWN_ERROR, KillReason
from app.worker.config import WorkerConfig
from app.worker.jobs import JobTable
from app.worker.outbox import Outbox

log = logging.getLogger("labbatch.worker")

# How long a shutdown waits for killed jobs to be reaped (SIGKILL follows SIGTERM after 1 s).
REAP_DEADLINE_S = 5.0
REPLACED = b"replaced by another driver connection"


class WorkerAgent:
    """Runs what the connected driver schedules and decides when the agent exits."""

    def __init__(self, config: WorkerConfig, *, bash_path: str) -> None:
        self.config = config
        self.jobs = JobTable(config, bash_path=bash_path, listener=self)
        self._outbox = Outbox()
        self._ws: web.WebSocketResponse | None = None
        self._loop = asyncio.get_running_loop()
        self._stop_reason: str | None = None
        self._driver_stops = False  # the driver asked, and has put the jobs back already
        self._stopped = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None
        self._idle_since = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._orphan_timer: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[bool]] = set()
        self._cached_sent: dict[str, int] | None = None  # cache keys the driver has heard of

    def start(self) -> None:
        """Start the sender, heartbeats and the idle and orphan clocks."""
        self._outbox.start()
        self._heartbeat = asyncio.create_task(self._beat_forever(), name="worker-heartbeat")
        self._start_orphan_clock()
        self._update_idle_clock()

    def request_stop(self, reason: str) -> None:
        """Ask the agent to kill its jobs and exit (idempotent)."""
        if self._stop_reason is None:
            log.info("stopping: %s", reason)
            self._stop_reason = reason
            self._stopped.set()

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    async def run_until_stopped(self) -> None:
        """Wait for a stop request, then kill every job, reap it and close the connection."""
        await self._stopped.wait()
        self._cancel_clocks()
        self.jobs.kill_all(KillReason.SHUTDOWN)
        try:
            async with asyncio.timeout(REAP_DEADLINE_S):
                await self.jobs.wait_all_ended()
        except TimeoutError:
            log.error("jobs still running %ss after SIGKILL", REAP_DEADLINE_S)
        await self._outbox.flush()
        await self._outbox.stop()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close(code=1001, message=b"worker exiting")

    async def attach(self, ws: web.WebSocketResponse, *, remote: str | None = None) -> None:
        """Make ``ws`` the driver connection (closing any older one) and send it Hello.

        A second authenticated connection replaces the first rather than being refused: the
        first may be a half-open socket of a driver that died, and refusing would lock its
        successor out. Only a holder of the token gets here; the old peer is told why.
        """
        old_ws, self._ws = self._ws, ws
        if old_ws is not None:
            self._outbox.detach(old_ws)
            log.warning(
                "a new driver connection from %s replaces the open one; closing the old one",
                remote,
            )
            # Closing waits for the old peer's reply; Hello must not wait for a dead peer.
            closing = asyncio.create_task(old_ws.close(code=REPLACED_CLOSE_CODE, message=REPLACED))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self._stop_orphan_clock()
        self._cached_sent = None  # a new connection hears the whole cache at the next beat
        self._outbox.begin_attach(ws)
        await ws.send_str(self._hello().to_json())
        self._outbox.open(ws)

    def detach(self, ws: web.WebSocketResponse) -> None:
        """The driver connection ``ws`` closed."""
        self._outbox.detach(ws)
        if self._ws is ws:
            self._ws = None
            log.info("driver disconnected; jobs keep running")
            self._start_orphan_clock()

    def handle(self, message: Message) -> None:
        """Act on one driver frame."""
        if isinstance(message, Schedule):
            self.jobs.schedule(message.jobs)
            self._update_idle_clock()
        elif isinstance(message, Cancel):
            self.jobs.cancel(message.attempts)
        elif isinstance(message, Ack):
            self.jobs.ack(message.attempts)
        elif isinstance(message, Shutdown):
            self._driver_stops = True
            self.request_stop(f"the driver asked: {message.reason or 'shutdown'}")
        else:
            log.warning("ignoring a %r frame, which only a worker sends", message.type)

    def job_started(self, start: JobStart) -> None:
        self._outbox.job_started(start)

    def job_ended(self, result: JobResult) -> None:
        if self.stopping and not self._driver_stops and result.error == SHUTDOWN_ERROR:
            # Stopped from outside (SIGTERM: a spot VM preempted, a machine shutting down) or
            # by its own clocks: the job did not end, its worker did. Saying "cancelled" would
            # end the job for good; silence lets the driver see the worker go and run it again.
            return
        self._outbox.job_ended(result)
        if self.jobs.is_idle:
            self._update_idle_clock()

    def _hello(self) -> Hello:
        n_dropped = self.jobs.forget_queued()
        if n_dropped:
            log.info("forgot %d attempts still waiting for cores (not in Hello)", n_dropped)
        return Hello(
            version=PROTOCOL_VERSION,
            instance=self.config.name,
            cores_mcpu=self.config.cores_mcpu,
            free_mcpu=self.jobs.free_mcpu,
            running=self.jobs.running(),
            finished=self.jobs.finished(),
        )

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            cached = self.jobs.cached_keys()
            changed = cached if cached != self._cached_sent else None
            self._cached_sent = cached
            beat = Heartbeat(time.time(), self.jobs.n_running, self.jobs.free_mcpu, changed)
            self._outbox.send(beat)

    def _update_idle_clock(self) -> None:
        if self.config.idle_timeout_s is None or self.stopping:
            return
        if not self.jobs.is_idle:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
                self._idle_timer = None
        elif self._idle_timer is None:
            self._idle_since = time.monotonic()
            self._idle_timer = self._loop.call_later(self.config.idle_timeout_s, self._retire)

    def _retire(self) -> None:
        self._idle_timer = None
        idle_s = time.monotonic() - self._idle_since
        self._outbox.send(Retiring(idle_s=round(idle_s, 3)))
        self.request_stop(f"idle for {idle_s:.1f}s")

    def _start_orphan_clock(self) -> None:
        self._stop_orphan_clock()
        if self.stopping:
            return
        timeout_s = self.config.orphan_timeout_s
        self._orphan_timer = self._loop.call_later(timeout_s, self._orphaned)

    def _stop_orphan_clock(self) -> None:
        if self._orphan_timer is not None:
            self._orphan_timer.cancel()
            self._orphan_timer = None

    def _orphaned(self) -> None:
        self._orphan_timer = None
        self.request_stop(f"no driver connected for {self.config.orphan_timeout_s:g}s")

    def _cancel_clocks(self) -> None:
        self._stop_orphan_clock()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
