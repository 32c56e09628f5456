"""The driver: holds the lease and runs the loops that move jobs through their states.

Loops (each a task of one TaskManager): the scheduler (poked when capacity or work appears),
the result writer (poked by workers' reports; one transaction per burst), the canceller, the
instance monitor (heartbeats, reconnects, keeping the pool at size), the change-marker poller
(work submitted by other processes) and the lease renewer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.engine import Connection

from app.clouds.base import CloudDriver, InstanceRequest
from app.engine import lease
from app.engine.completion import Changes, JobEnd, end_jobs
from app.engine.connection import DialError, WorkerConnection
from app.engine.events import BatchChanged, EventBus, InstanceChanged, JobsChanged, LeaseChanged
from app.engine.frontend import read_marker
from app.engine.instances import (
    LiveInstance,
    activate_instance,
    insert_instance,
    live_instances,
    open_attempts,
    requeue_attempts,
    set_instance_state,
)
from app.engine.placement import Capacity, Demand, place
from app.engine.results import apply_results, record_starts
from app.engine.secrets import worker_token
from app.engine.tasks import TaskManager, Trigger
from app.errors import LabBatchError
from app.models.db import Database
from app.models.prepared import Prepared
from app.models.tables import Attempt, Batch, InstanceState, Job, JobState, Pool, jobs_table
from app.protocol import (
    Ack,
    AttemptRef,
    Cancel,
    Completed,
    Heartbeat,
    Hello,
    JobResult,
    JobRun,
    JobStart,
    Message,
    Retiring,
    Schedule,
    Shutdown,
    Started,
)

log = logging.getLogger("labbatch.driver")
_jobs = jobs_table

MIN_JOB_MCPU = 250
MAX_JOBS_PER_PASS = 5000
HELLO_TIMEOUT_S = 10.0
RECONNECT_GRACE_S = 10.0
HEARTBEAT_STALE_S = 15.0
MARKER_POLL_S = 0.2
# A pass has a fixed cost (one transaction); waiting this long after one lets reports pile up
# so the next pass carries several. A chain's next report comes later than this anyway.
PASS_MIN_INTERVAL_S = float(os.environ.get("LABBATCH_PASS_INTERVAL_S", "0.002"))


@dataclass(frozen=True, slots=True)
class PoolSize:
    """How many local workers to keep, and how big."""

    n_workers: int
    worker_cores_mcpu: int
    pool: str = "local"


class Driver:
    """Runs the driver loops for one pool while this process holds the lease."""

    def __init__(
        self,
        db: Database,
        cloud: CloudDriver,
        *,
        size: PoolSize,
        bus: EventBus | None = None,
        batch_dir: Callable[[int], str | None] = lambda _batch_id: None,
    ) -> None:
        self.db = db
        self.cloud = cloud
        self.size = size
        self.bus = bus or EventBus()
        self.batch_dir = batch_dir
        self.holder = lease.new_holder_id()
        self.instances: dict[str, LiveInstance] = {}
        self.has_lease = False
        self._tasks = TaskManager()
        self._write_lock = asyncio.Lock()
        self._results: list[tuple[str, JobResult]] = []
        self._starts: list[JobStart] = []
        self._cancel_sent: set[tuple[int, int, int]] = set()
        self._hello: dict[int, asyncio.Event] = {}
        self._creating = 0
        self._create_failures = 0
        self.problem: str | None = None  # why the pool cannot run anything, for the user
        self._stopping = False
        self._abdication: asyncio.Future[None] | None = None
        self._marker = -1
        self._scheduler: Trigger | None = None
        self._canceller: Trigger | None = None
        self._monitor: Trigger | None = None
        cloud.on_lost(self._on_instance_lost)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, *, wait_for_lease: bool = False) -> bool:
        """Take the lease and start the loops; False if another process holds the lease."""
        while not await lease.try_acquire(self.db, self.holder):
            if not wait_for_lease:
                return False
            await asyncio.sleep(lease.RENEW_EVERY_S)
        self.has_lease = True
        self.bus.publish(LeaseChanged(held=True))
        self._marker = await read_marker(self.db)
        await self._ensure_pool()
        await self._recover()
        t = self._tasks
        self._scheduler = t.every(
            "pass", self._pass, interval_s=1.0, min_interval_s=PASS_MIN_INTERVAL_S
        )
        self._canceller = t.every("canceller", self._cancel_running, interval_s=2.0)
        self._monitor = t.every("monitor", self._watch_instances, interval_s=1.0)
        t.every("marker", self._poll_marker, interval_s=MARKER_POLL_S)
        t.every("lease", self._renew_lease, interval_s=lease.RENEW_EVERY_S)
        self._monitor.poke()
        return True

    async def stop(self) -> None:
        """Stop the loops and the workers; unfinished attempts go back to Ready for later."""
        if self._abdication is not None:
            await self._abdication
            return
        self._stopping = True
        await self._tasks.stop()
        instances = list(self.instances.values())
        for inst in instances:
            if inst.conn is not None:
                await inst.conn.send(Shutdown(reason="driver stopping"))
        await self.cloud.close()
        for inst in instances:
            if inst.conn is not None:
                await inst.conn.close()
        if self.has_lease:
            now = time.time()

            def put_back(conn: Connection) -> None:
                for inst in instances:
                    refs = open_attempts(conn, inst.name)
                    requeue_attempts(conn, refs, reason="driver stopped", now=now, charge=False)
                    set_instance_state(
                        conn, inst.name, InstanceState.DELETED, reason="driver stopped", now=now
                    )

            async with self._write_lock:
                await self.db.run(put_back)
            await lease.release(self.db, self.holder)
            self.has_lease = False
        self.instances.clear()

    def notify_changed(self) -> None:
        """New work or a cancel was stored by this process: look now, not at the next poll."""
        for trigger in (self._scheduler, self._canceller):
            if trigger is not None:
                trigger.poke()

    # -- recovery -------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Rebuild from the database: adopt surviving workers, re-run what the lost ones had."""
        rows = await self.db.run(lambda conn: live_instances(conn, self.size.pool))
        for row in rows:
            adopted = row.address is not None and await self.cloud.adopt_instance(
                row.name, row.handle or {}
            )
            inst = LiveInstance(
                name=row.name,
                pool=row.pool,
                cores_mcpu=row.cores_mcpu,
                address=row.address,
                location=row.location or "local",
                state=InstanceState.ACTIVE,
            )
            if adopted:
                await self._load_assigned(inst)
                self.instances[inst.name] = inst
                if await self._connect(inst):
                    log.info("adopted worker %s from an earlier driver", inst.name)
                    continue
                self.instances.pop(inst.name, None)
            await self._retire(inst, reason="lost while no driver was running")

    async def _ensure_pool(self) -> None:
        def ensure(conn: Connection) -> None:
            exists = conn.execute(select(Pool.name).where(Pool.name == self.size.pool)).first()
            if exists is None:
                conn.execute(
                    insert(Pool).values(
                        name=self.size.pool,
                        cloud=self.cloud.kind,
                        worker_cores_mcpu=self.size.worker_cores_mcpu,
                        min_instances=self.size.n_workers,
                        max_instances=self.size.n_workers,
                        max_live_instances=self.size.n_workers,
                        config={},
                    )
                )

        await self.db.run(ensure)

    async def _load_assigned(self, inst: LiveInstance) -> None:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(Attempt.attempt, *_RUN_COLUMNS)
                .join(Job, and_(Job.batch_id == Attempt.batch_id, Job.job_id == Attempt.job_id))
                .where(Attempt.instance_name == inst.name, Attempt.end_time.is_(None))
            )
            for row in rows:
                run = self._job_run(row, row.attempt)
                inst.assigned[run.ref.key()] = (run, None)

    # -- connections ----------------------------------------------------------------------

    async def _connect(self, inst: LiveInstance) -> bool:
        """Dial a worker and wait for its hello; True once it is usable."""
        assert inst.address is not None
        try:
            conn = await WorkerConnection.dial(inst.name, inst.address, worker_token(inst.name))
        except DialError as exc:
            log.info("%s", exc)
            return False
        hello = asyncio.Event()
        self._hello[conn.id] = hello
        conn.start(self._on_message, self._on_closed)
        try:
            await asyncio.wait_for(hello.wait(), HELLO_TIMEOUT_S)
        except TimeoutError:
            log.warning("worker %s did not say hello", inst.name)
            await conn.close()
            return False
        finally:
            self._hello.pop(conn.id, None)
        return True

    def _on_message(self, conn: WorkerConnection, message: Message) -> None:
        inst = self.instances.get(conn.instance_name)
        if inst is None or self._stopping:
            return
        if isinstance(message, Completed):
            self._results.extend((inst.name, r) for r in message.jobs)
            self._poke(self._scheduler)
        elif isinstance(message, Started):
            self._starts.extend(message.jobs)
        elif isinstance(message, Heartbeat):
            inst.last_heartbeat = time.time()
        elif isinstance(message, Hello):
            self._on_hello(inst, conn, message)
        elif isinstance(message, Retiring):
            self._tasks.spawn(f"retire-{inst.name}", self._retire(inst, reason="idle"))

    def _on_hello(self, inst: LiveInstance, conn: WorkerConnection, hello: Hello) -> None:
        inst.conn = conn
        inst.state = InstanceState.ACTIVE
        inst.last_heartbeat = time.time()
        inst.disconnected_since = None
        known = {s.ref.key() for s in hello.running} | {r.ref.key() for r in hello.finished}
        if hello.finished:
            self._results.extend((inst.name, r) for r in hello.finished)
            self._poke(self._scheduler)
        missing = [run for key, (run, _sent) in inst.assigned.items() if key not in known]
        if missing:
            self._tasks.spawn(f"resend-{inst.name}", self._send_runs(inst, missing))
        event = self._hello.get(conn.id)
        if event is not None:
            event.set()
        self._poke(self._scheduler)

    def _on_closed(self, conn: WorkerConnection) -> None:
        inst = self.instances.get(conn.instance_name)
        if inst is not None and inst.conn is conn:
            inst.conn = None
            inst.disconnected_since = time.time()
            self._poke(self._monitor)

    def _on_instance_lost(self, name: str, reason: str) -> None:
        inst = self.instances.get(name)
        if inst is not None and not self._stopping:
            self._tasks.spawn(f"lost-{name}", self._retire(inst, reason=reason))

    @staticmethod
    def _poke(trigger: Trigger | None) -> None:
        if trigger is not None:
            trigger.poke()

    # -- instances ------------------------------------------------------------------------

    async def _watch_instances(self) -> None:
        """Reconnect dropped workers, retire dead ones, keep the pool at its size."""
        now = time.time()
        for inst in list(self.instances.values()):
            if inst.state != InstanceState.ACTIVE:
                continue
            if inst.conn is not None and now - inst.last_heartbeat > HEARTBEAT_STALE_S:
                log.warning("worker %s missed its heartbeats", inst.name)
                await inst.conn.close()
            if inst.conn is None:
                since = inst.disconnected_since or now
                if now - since > RECONNECT_GRACE_S:
                    await self._retire(inst, reason="worker stopped answering")
                elif not await self._connect(inst):
                    inst.disconnected_since = since
        live = sum(1 for i in self.instances.values() if i.state != InstanceState.INACTIVE)
        for _ in range(self.size.n_workers - live - self._creating):
            self._creating += 1
            self._tasks.spawn("create-instance", self._create_instance())

    async def _create_instance(self) -> None:
        name = f"{self.size.pool}-{uuid.uuid4().hex[:8]}"
        cores = self.size.worker_cores_mcpu
        now = time.time()
        inst = LiveInstance(name, self.size.pool, cores, None, "local")
        try:
            await self.db.run(
                lambda conn: insert_instance(
                    conn, name=name, pool=self.size.pool, cores_mcpu=cores, now=now
                )
            )
            self.instances[name] = inst
            self.bus.publish(InstanceChanged(name, inst.pool, str(InstanceState.PENDING)))
            created = await self.cloud.create_instance(
                InstanceRequest(
                    name=name, pool=inst.pool, cores_mcpu=cores, token=worker_token(name)
                )
            )
            inst.address = created.address
            inst.location = created.location
            await self.db.run(
                lambda conn: activate_instance(
                    conn,
                    name,
                    address=created.address,
                    location=created.location,
                    handle=created.handle,
                    now=time.time(),
                )
            )
            if not await self._connect(inst):
                raise DialError(f"worker {name} started but did not accept the driver")
            self.bus.publish(InstanceChanged(name, inst.pool, str(InstanceState.ACTIVE)))
            self._create_failures = 0
            self.problem = None
        except Exception as exc:
            self._create_failures += 1
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error(
                "could not create worker %s: %s",
                name,
                reason,
                exc_info=not isinstance(exc, LabBatchError),
            )
            if self._create_failures >= 3 and not any(i.healthy for i in self.instances.values()):
                self.problem = f"pool {self.size.pool} cannot start workers: {reason}"
            await self._retire(inst, reason=f"could not start: {reason}")
            # back off: 1, 2, 4 … 30 s between attempts while workers cannot start
            await asyncio.sleep(min(30.0, 2.0 ** (self._create_failures - 1)))
        finally:
            self._creating -= 1

    async def _retire(self, inst: LiveInstance, *, reason: str) -> None:
        """Deactivate an instance: its unfinished attempts run again elsewhere; then delete it."""
        if inst.state == InstanceState.INACTIVE:
            return
        inst.state = InstanceState.INACTIVE
        self.instances.pop(inst.name, None)
        if inst.conn is not None:
            await inst.conn.close()
        now = time.time()

        def deactivate(conn: Connection) -> tuple[list[tuple[int, int, int]], Changes]:
            refs = open_attempts(conn, inst.name)
            changes = requeue_attempts(conn, refs, reason=reason, now=now)
            set_instance_state(conn, inst.name, InstanceState.INACTIVE, reason=reason, now=now)
            return refs, changes

        async with self._write_lock:
            refs, changes = await self.db.run(deactivate)
        if refs:
            log.warning("worker %s: %s; %d attempt(s) will run again", inst.name, reason, len(refs))
        self._publish(changes)
        self.bus.publish(InstanceChanged(inst.name, inst.pool, str(InstanceState.INACTIVE), reason))
        await self.cloud.delete_instance(inst.name)
        await self.db.run(
            lambda conn: set_instance_state(
                conn, inst.name, InstanceState.DELETED, reason=None, now=now
            )
        )
        self.bus.publish(InstanceChanged(inst.name, inst.pool, str(InstanceState.DELETED), reason))
        self._poke(self._scheduler)
        self._poke(self._monitor)

    # -- the pass: reports in, jobs out ----------------------------------------------------

    async def _pass(self) -> None:
        """Store every report that arrived, then place Ready jobs on the free cores.

        Both happen in one transaction: a finished job's child is placed in the same commit
        that ends its parent, so a chain costs one commit per link and a burst of
        completions costs one commit in all.
        """
        results, self._results = self._results, []
        starts, self._starts = self._starts, []
        released = self._release(results)
        healthy = [i for i in self.instances.values() if i.healthy]
        now = time.time()
        try:

            def transaction(conn: Connection) -> tuple[Changes, dict[str, list[JobRun]]]:
                record_starts(conn, starts)
                changes = apply_results(conn, [r for _name, r in results], now)
                by_instance, too_big = self._place_ready(conn, healthy, now)
                changes.merge(end_jobs(conn, too_big, now))
                return changes, by_instance

            async with self._write_lock:
                changes, by_instance = await self.db.run(transaction)
        except BaseException:
            for inst, key, entry in released:  # nothing was stored: try again next pass
                inst.assigned[key] = entry
            self._results[:0] = results
            self._starts[:0] = starts
            raise
        for name, runs in by_instance.items():
            inst = self.instances[name]
            for run in runs:
                inst.assigned[run.ref.key()] = (run, None)
        await asyncio.gather(
            *(self._send_runs(self.instances[n], runs) for n, runs in by_instance.items()),
            self._send_acks(results),
        )
        if by_instance:
            changes.n_jobs_changed += sum(len(runs) for runs in by_instance.values())
            changes.batches |= {run.batch_id for runs in by_instance.values() for run in runs}
            self._poke(self._scheduler)  # there may be more Ready jobs than one pass took
        self._publish(changes)
        if changes.cancelled_batches:
            self._poke(self._canceller)

    def _release(
        self, results: list[tuple[str, JobResult]]
    ) -> list[tuple[LiveInstance, tuple[int, int, int], tuple[JobRun, int | None]]]:
        """Give the cores of finished attempts back (returned so a failed pass can undo it)."""
        released = []
        for name, result in results:
            inst = self.instances.get(name)
            key = result.ref.key()
            if inst is not None and key in inst.assigned:
                released.append((inst, key, inst.assigned.pop(key)))
            self._cancel_sent.discard(key)
        return released

    async def _send_acks(self, results: list[tuple[str, JobResult]]) -> None:
        acks: dict[str, list[Any]] = defaultdict(list)
        for name, result in results:
            acks[name].append(result.ref)
        for name, refs in acks.items():
            inst = self.instances.get(name)
            if inst is not None and inst.conn is not None:
                await inst.conn.send(Ack(attempts=refs))

    def _place_ready(
        self, conn: Connection, healthy: list[LiveInstance], now: float
    ) -> tuple[dict[str, list[JobRun]], list[JobEnd]]:
        """Place the head of the Ready queue best-fit; jobs bigger than any worker end Error."""
        by_instance: dict[str, list[JobRun]] = defaultdict(list)
        free_mcpu = sum(max(0, i.free_mcpu) for i in healthy)
        if free_mcpu < MIN_JOB_MCPU:
            return by_instance, []
        largest = max(i.cores_mcpu for i in healthy)
        query = _READY_LOCKED if conn.dialect.name == "postgresql" else _READY
        limit = min(free_mcpu // MIN_JOB_MCPU, MAX_JOBS_PER_PASS)
        rows = query.execute(conn, {"b_pool": self.size.pool, "b_limit": limit})
        fitting = {(r.batch_id, r.job_id): r for r in rows if r.cores_mcpu <= largest}
        placed = place(
            [Demand(key, r.cores_mcpu) for key, r in fitting.items()],
            [Capacity(i.name, i.free_mcpu, i.location) for i in healthy],
        )
        for key, name in placed:
            row = fitting[key]  # type: ignore[index]
            by_instance[name].append(self._job_run(row, row.last_attempt + 1))
        self._mark_running(conn, by_instance, now)
        too_big = [
            JobEnd(
                r.batch_id,
                r.job_id,
                JobState.ERROR,
                now,
                error=f"needs {r.cores_mcpu / 1000:g} cores but the largest worker of "
                f"pool {self.size.pool} has {largest / 1000:g}",
            )
            for r in rows
            if r.cores_mcpu > largest
        ]
        return by_instance, too_big

    def _mark_running(
        self, conn: Connection, by_instance: dict[str, list[JobRun]], now: float
    ) -> None:
        rows = [
            {"b_b": run.batch_id, "b_j": run.job_id, "b_a": run.attempt, "b_i": name}
            for name, runs in by_instance.items()
            for run in runs
        ]
        if not rows:
            return
        _SET_RUNNING.executemany(conn, [{**r, "b_now": now} for r in rows])
        conn.execute(
            insert(Attempt),
            [
                {
                    "batch_id": r["b_b"],
                    "job_id": r["b_j"],
                    "attempt": r["b_a"],
                    "instance_name": r["b_i"],
                    "time_scheduled": now,
                }
                for r in rows
            ],
        )

    def _job_run(self, row: Any, attempt: int) -> JobRun:
        spec = row.spec
        return JobRun(
            batch_id=row.batch_id,
            job_id=row.job_id,
            attempt=attempt,
            name=row.name,
            command=spec["command"],
            cores_mcpu=row.cores_mcpu,
            env=spec.get("env") or {},
            timeout_s=spec.get("timeout_s"),
            image=spec.get("image"),
            memory_bytes=row.memory_bytes or None,
            batch_dir=self.batch_dir(row.batch_id),
        )

    async def _send_runs(self, inst: LiveInstance, runs: list[JobRun]) -> None:
        conn = inst.conn
        if conn is None or not await conn.send(Schedule(jobs=runs)):
            return  # resent from assigned when the worker says hello again
        for run in runs:
            key = run.ref.key()
            if key in inst.assigned:
                inst.assigned[key] = (run, conn.id)

    async def _cancel_running(self) -> None:
        """Kill the Running jobs of cancelled batches (always_run jobs keep running)."""
        async with self.db.connect() as conn:
            rows = await conn.execute(
                select(Job.batch_id, Job.job_id, Job.last_attempt, Job.instance_name)
                .join(Batch, Batch.id == Job.batch_id)
                .where(
                    Batch.cancelled.is_(True),
                    Batch.complete.is_(False),
                    Job.state == JobState.RUNNING,
                    Job.always_run.is_(False),
                )
            )
            targets: dict[str, list[Any]] = defaultdict(list)
            for b, j, a, name in rows:
                if name is not None and (b, j, a) not in self._cancel_sent:
                    targets[name].append((b, j, a))

        for name, keys in targets.items():
            inst = self.instances.get(name)
            if inst is None or inst.conn is None:
                continue
            if await inst.conn.send(Cancel(attempts=[AttemptRef(*k) for k in keys])):
                self._cancel_sent.update(keys)

    async def _poll_marker(self) -> None:
        marker = await read_marker(self.db)
        if marker != self._marker:
            self._marker = marker
            self.notify_changed()

    async def _renew_lease(self) -> None:
        if await lease.try_acquire(self.db, self.holder):
            return
        log.error("lost the driver lease to another process; this one stops driving")
        # Not through the task manager: abdicating cancels every task it owns, this one too.
        self._abdication = asyncio.ensure_future(self._abdicate())

    async def _abdicate(self) -> None:
        """Stop the loops and drop the connections; the database and the workers now belong
        to the new lease holder, so nothing is written and no worker is stopped."""
        self._stopping = True
        self.has_lease = False
        await self._tasks.stop()
        for inst in list(self.instances.values()):
            if inst.conn is not None:
                await inst.conn.close()
        self.instances.clear()
        self.bus.publish(LeaseChanged(held=False))

    def _publish(self, changes: Changes) -> None:
        for batch_id in sorted(changes.batches):
            self.bus.publish(JobsChanged(batch_id, changes.n_jobs_changed))
            self.bus.publish(
                BatchChanged(
                    batch_id,
                    "complete" if batch_id in changes.completed_batches else "running",
                    batch_id in changes.completed_batches,
                )
            )


_RUN_COLUMNS = (
    Job.batch_id,
    Job.job_id,
    Job.name,
    Job.cores_mcpu,
    Job.memory_bytes,
    Job.spec,
    Job.last_attempt,
)
# the head of the Ready queue of one pool, oldest batch first
_READY_QUERY = (
    select(*_RUN_COLUMNS)
    .where(Job.state == str(JobState.READY))
    .where(Job.pool.is_(None) | (Job.pool == bindparam("b_pool")))
    .order_by(Job.batch_id, Job.job_id)
    .limit(bindparam("b_limit"))
)
_READY = Prepared(_READY_QUERY, json_columns=["spec"])
_READY_LOCKED = Prepared(_READY_QUERY.with_for_update(skip_locked=True))
_SET_RUNNING = Prepared(
    update(_jobs)
    .where(_jobs.c.batch_id == bindparam("b_b"), _jobs.c.job_id == bindparam("b_j"))
    .values(
        state=str(JobState.RUNNING),
        n_attempts=_jobs.c.n_attempts + 1,
        last_attempt=bindparam("b_a"),
        instance_name=bindparam("b_i"),
        time_started=bindparam("b_now"),
    )
)
