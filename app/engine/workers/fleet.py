"""The driver's workers across pools: connect, create, watch, scale and retire them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.engine import Connection

from app.clouds.base import CloudDriver, InstanceRequest
from app.engine.batches.completion import Changes
from app.engine.events import EventBus, InstanceChanged
from app.engine.scheduler.autoscale import (
    CreateReason,
    PoolInstance,
    PoolSettings,
    ScalePlan,
    Zone,
    demand_budget_mcpu,
    plan_scale_up,
)
from app.engine.scheduler.planner import load_head, standard_only
from app.engine.scheduler.scheduling import QueuedJob, UserQueue, cut_head
from app.engine.secrets import worker_token
from app.engine.tasks import TaskManager
from app.engine.workers import private, takeover
from app.engine.workers.boots import (
    BootFailedError,
    BootOutcome,
    boot_log_tail,
    dial_until_up,
    failed_while_booting,
    missed_deadline,
)
from app.engine.workers.connection import DialError, WorkerConnection
from app.engine.workers.deletions import Deleter
from app.engine.workers.instances import (
    Assignment,
    LiveInstance,
    activate_instance,
    deleting_instances,
    insert_instance,
    live_instances,
    open_attempts,
    record_address,
    requeue_attempts,
    set_instance_state,
    tls_pin,
)
from app.engine.workers.pools import START_FAILURE, PoolConfig
from app.errors import LabBatchError
from app.models.db import JOB_PRIVATE_POOL, Database
from app.models.tables import RUN_COLUMNS, Attempt, InstanceState, Job, JobState
from app.protocol import PROTOCOL_VERSION, JobRun, Message, Shutdown

SEND_TIMEOUT_S = 2.0
log = logging.getLogger("labbatch.fleet")

HELLO_TIMEOUT_S = 10.0
RECONNECT_GRACE_S = 10.0
HEARTBEAT_STALE_S = 15.0
MONITOR_PERIOD_S = 1.0

MessageHandler = Callable[[WorkerConnection, Message], None]
RunBuilder = Callable[[Any, int], JobRun]


class WorkerMismatchError(LabBatchError):
    """A worker that speaks another protocol version: another LabBatch release installed it."""


class Fleet:
    """Every live instance of the pools this driver runs, and the rules that size them."""

    def __init__(
        self,
        db: Database,
        clouds: Mapping[str, CloudDriver],
        *,
        bus: EventBus,
        tasks: TaskManager,
        write_lock: asyncio.Lock,
        on_changes: Callable[[Changes], None],
        on_capacity: Callable[[], None],
    ) -> None:
        self.db = db
        self.clouds = clouds
        self.bus = bus
        self.instances: dict[str, LiveInstance] = {}
        self.pools: dict[str, PoolConfig] = {}
        self.problems: dict[str, str] = {}  # pool -> why it cannot start workers
        self._tasks = tasks
        self._write_lock = write_lock
        self._on_changes = on_changes
        self._on_capacity = on_capacity
        self._on_message: MessageHandler | None = None
        self._hello: dict[int, asyncio.Event] = {}
        self._refused: dict[int, str] = {}  # connection id -> why its hello was refused
        self._creating: dict[str, int] = defaultdict(int)
        # of those, the standard workers of spot pools (for jobs that may not be preempted)
        self._creating_standard: dict[str, int] = defaultdict(int)
        self._failures: dict[str, int] = defaultdict(int)
        self._retry_at: dict[str, float] = {}  # pool -> no new worker before (monotonic)
        self._held: dict[str, int] = {}  # pool -> the user's scale target being held
        self.only_user: dict[str, str] = {}  # pool -> the one user whose jobs it runs
        self._stopping = False
        # set once the first watch() has sized every pool (its creations are under way)
        self.sized = asyncio.Event()
        self.deleter = Deleter(db, self._cloud_of, on_deleted=self._on_deleted)
        for cloud in clouds.values():
            cloud.on_lost(self._on_lost)

    # -- connections ----------------------------------------------------------------------

    def handle_messages(self, handler: MessageHandler) -> None:
        self._on_message = handler

    async def connect(self, inst: LiveInstance) -> bool:
        """Dial a worker and wait for its hello; True once it is usable."""
        assert inst.address is not None and self._on_message is not None
        try:
            conn = await WorkerConnection.dial(
                inst.name, inst.address, worker_token(inst.name), tls_sha256=inst.tls_sha256
            )
        except DialError as exc:
            log.info("%s", exc)
            return False
        hello = asyncio.Event()
        self._hello[conn.id] = hello
        conn.start(self._on_message, self._on_closed)
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                await hello.wait()
        except TimeoutError:
            log.warning("worker %s did not say hello", inst.name)
            await conn.close()
            return False
        except asyncio.CancelledError:
            # the driver stopped while the worker said hello: the connection is nobody's yet
            # (fleet.stop closes only those of workers that said it), so close it here
            await asyncio.shield(conn.close())
            raise
        finally:
            self._hello.pop(conn.id, None)
        if (refused := self._refused.pop(conn.id, None)) is not None:
            await conn.close()
            raise WorkerMismatchError(refused)
        return True

    def said_hello(self, inst: LiveInstance, conn: WorkerConnection, version: int) -> bool:
        """A worker's hello arrived: it is active and usable, if it speaks our protocol."""
        if version != PROTOCOL_VERSION:
            self._refused[conn.id] = (
                f"worker {inst.name} speaks protocol {version}, this LabBatch "
                f"{PROTOCOL_VERSION}: it runs another LabBatch release (install the same "
                "release on the workers, or let LabBatch replace them)"
            )
            if (event := self._hello.get(conn.id)) is not None:
                event.set()
            return False
        inst.conn = conn
        inst.state = InstanceState.ACTIVE
        inst.last_heartbeat = time.time()
        inst.disconnected_since = None
        event = self._hello.get(conn.id)
        if event is not None:
            event.set()
        return True

    def _on_closed(self, conn: WorkerConnection) -> None:
        inst = self.instances.get(conn.instance_name)
        if inst is not None and inst.conn is conn:
            inst.conn = None
            inst.disconnected_since = time.time()

    def _on_lost(self, name: str, reason: str) -> None:
        inst = self.instances.get(name)
        if inst is None or self._stopping:
            return
        if inst.state == InstanceState.PENDING and inst.pool in self.pools:
            self._tasks.spawn(f"lost-{name}", self._boot_failed(inst, reason))
        else:
            self._tasks.spawn(f"lost-{name}", self.retire(inst, reason=reason))

    async def _boot_failed(self, inst: LiveInstance, reason: str) -> None:
        """The cloud failed a VM while it booted: delete it, and back off like any failed start."""
        pool = self.pools[inst.pool]
        console = await boot_log_tail(self.clouds[pool.cloud], inst.name)
        await self._creation_failed(pool, inst, failed_while_booting(inst.name, reason, console))

    def _cloud_of(self, pool: str) -> CloudDriver | None:
        config = self.pools.get(pool)
        return self.clouds.get(config.cloud) if config is not None else None

    def _on_deleted(self, name: str, pool: str) -> None:
        self.bus.publish(InstanceChanged(name, pool, str(InstanceState.DELETED)))
        self._on_capacity()

    # -- recovery -------------------------------------------------------------------------

    async def recover(self, build_run: RunBuilder) -> None:
        """Adopt the workers an earlier driver left running; retire the ones that are gone."""
        rows = await self.db.run(lambda conn: live_instances(conn, list(self.pools)))
        await self.db.run(lambda conn: private.reset_creating(conn, JOB_PRIVATE_POOL))
        for gone in await self.db.run(lambda conn: deleting_instances(conn, list(self.pools))):
            self.deleter.keep(gone.name, gone.pool, gone.handle)  # an earlier driver's delete
        for row in rows:
            cloud = self.clouds.get(self.pools[row.pool].cloud)
            inst = LiveInstance(
                name=row.name,
                pool=row.pool,
                cores_mcpu=row.cores_mcpu,
                address=row.address,
                location=row.location or "local",
                state=InstanceState(row.state),
                standing=row.standing,
                tls_sha256=tls_pin(row.handle),
                preemptible=bool((row.handle or {}).get("spot")),
                idle_since=time.time(),
                handle=dict(row.handle or {}),
            )
            adopted = (
                row.pool != JOB_PRIVATE_POOL  # which job each was for is not kept
                and cloud is not None
                and row.address is not None
                and await cloud.adopt_instance(row.name, row.handle or {})
            )
            if adopted and inst.state == InstanceState.PENDING:  # still booting: dial on
                self.instances[inst.name] = inst
                deadline = row.time_created + self.pools[row.pool].boot_deadline_s
                self._tasks.spawn(
                    f"boot-{inst.name}", self._bring_up(self.pools[row.pool], inst, deadline)
                )
                continue
            if adopted:
                await self._load_assigned(inst, build_run)
                self.instances[inst.name] = inst
                try:
                    if await self.connect(inst):
                        log.info("adopted worker %s from an earlier driver", inst.name)
                        continue
                    reason = "lost while no driver was running"
                except WorkerMismatchError as exc:
                    log.error("%s", exc)
                    reason = str(exc)
                self.instances.pop(inst.name, None)
                await self.retire(inst, reason=reason)
                continue
            await self.retire(inst, reason="lost while no driver was running")
        self._tasks.spawn("orphan sweep", self.delete_orphans())

    async def delete_orphans(self) -> None:
        """Delete the cloud VMs of our pools that no live instance row knows: left behind by
        a driver that crashed while creating or deleting them. They would bill forever."""
        for pool in list(self.pools.values()):
            cloud = self.clouds.get(pool.cloud)
            if cloud is None or pool.cloud == "local" or pool.name == JOB_PRIVATE_POOL:
                continue
            try:
                # a live view: a worker registered while the cloud lists its VMs is known too
                deleted = await cloud.delete_orphans(pool.name, self.instances.keys())
            except LabBatchError as exc:
                log.warning("could not look for orphaned VMs of pool %s: %s", pool.name, exc)
                continue
            if deleted:
                log.warning(
                    "deleted %d VM(s) of pool %s that no driver knew: %s",
                    len(deleted),
                    pool.name,
                    ", ".join(deleted),
                )

    async def _load_assigned(self, inst: LiveInstance, build_run: RunBuilder) -> None:
        def read(conn: Connection) -> list[Any]:
            return list(
                conn.execute(
                    select(Attempt.attempt, Job.user, *RUN_COLUMNS)
                    .join(Job, and_(Job.batch_id == Attempt.batch_id, Job.job_id == Attempt.job_id))
                    .where(Attempt.instance_name == inst.name, Attempt.end_time.is_(None))
                )
            )

        for row in await self.db.run(read):
            inst.assign(Assignment(build_run(row, row.attempt), row.user))

    # -- watching and sizing --------------------------------------------------------------

    async def watch(self) -> None:
        """Reconnect dropped workers, retire dead and idle ones, size each pool, and try
        again the deletes that failed."""
        try:
            await self.deleter.retry_due()
            now = time.time()
            for inst in list(self.instances.values()):
                if inst.state == InstanceState.ACTIVE:
                    await self._check_health(inst, now)
            for pool in self.pools.values():
                if pool.cloud in self.clouds:
                    await self._size(pool, now)
        finally:
            self.sized.set()

    async def _check_health(self, inst: LiveInstance, now: float) -> None:
        if inst.conn is not None and now - inst.last_heartbeat > HEARTBEAT_STALE_S:
            log.warning("worker %s missed its heartbeats", inst.name)
            await inst.conn.close()
        if inst.conn is None:
            since = inst.disconnected_since or now
            if now - since > RECONNECT_GRACE_S:
                await self.retire(inst, reason="worker stopped answering")
            else:
                try:
                    if not await self.connect(inst):
                        inst.disconnected_since = since
                except WorkerMismatchError as exc:  # upgraded under us: replace it
                    log.error("%s", exc)
                    await self.retire(inst, reason=str(exc))

    def live(self, pool: str) -> list[LiveInstance]:
        return [i for i in self.instances.values() if i.pool == pool and i.live]

    async def _size(self, pool: PoolConfig, now: float) -> None:
        if pool.name == JOB_PRIVATE_POOL:
            await self._size_private(pool)
            return
        live = self.live(pool.name)
        creating = self._creating[pool.name]
        if pool.scale_target is not None:  # checked against the stored limits when set
            await self._hold(pool, live, pool.scale_target)
            return
        self._held.pop(pool.name, None)
        limit = min(pool.max_live_instances, pool.max_instances)
        over = len([i for i in live if not i.draining]) + creating - limit
        if over > 0:  # the limits went down (Drain sets them to 0): busy ones finish first
            await self._drain([i for i in live if not i.draining], over, now)
        if self._backing_off(pool.name):
            await self._retire_idle(pool, live, now)
            return
        if len(live) + creating >= min(pool.max_live_instances, pool.max_instances):
            await self._retire_idle(pool, live, now)  # full: nothing to estimate
            return
        if pool.preemptible:
            room = min(pool.max_live_instances, pool.max_instances) - len(live) - creating
            await self._create_standard(pool, live, room)
            creating = self._creating[pool.name]
        only_user = self.only_user.get(pool.name)
        plan = await self.db.run(
            lambda conn: scale_plan(conn, pool, live, creating, only_user=only_user)
        )
        for create in plan.create:
            self._create(pool, create.count, standing=create.reason == CreateReason.MIN_INSTANCES)
        await self._retire_idle(pool, live, now)

    async def _hold(self, pool: PoolConfig, live: list[LiveInstance], target: int) -> None:
        """A user's "scale to N": the autoscaler neither adds nor times out workers while it
        holds; above N only idle workers retire (a busy one goes once its jobs end)."""
        if self._held.get(pool.name) != target:  # a new request: try now, even after failures
            self._retry_at.pop(pool.name, None)
            self._held[pool.name] = target
        serving = [i for i in live if not i.draining]
        excess = len(serving) + self._creating[pool.name] - target
        for inst in serving:
            if excess > 0 and not inst.assigned:
                await self.retire(inst, reason="scaled down")
                excess -= 1
        for inst in live:
            if inst.draining and not inst.assigned:
                await self.retire(inst, reason="drained")
        if excess < 0 and not self._backing_off(pool.name):
            self._create(pool, -excess, standing=False)

    async def _create_standard(self, pool: PoolConfig, live: list[LiveInstance], room: int) -> None:
        """Standard workers in a spot pool for the jobs that may no longer be preempted (their
        retry policy's fallback); they retire when idle like any other worker."""
        if room <= 0:
            return
        waiting = await self.db.run(lambda conn: _standard_demand(conn, pool.name))
        if not waiting:
            return
        free = sum(max(0, i.free_mcpu) for i in live if not i.preemptible and not i.draining)
        free += self._creating_standard[pool.name] * pool.worker_cores_mcpu
        needed = -(-(waiting - free) // pool.worker_cores_mcpu)  # ceiling
        self._create(pool, min(room, needed), standing=False, preemptible=False)

    def _backing_off(self, pool: str) -> bool:
        """True while the pool waits before trying to start a worker again after failures."""
        return time.monotonic() < self._retry_at.get(pool, 0.0)

    async def _size_private(self, pool: PoolConfig) -> None:
        """One worker per job that names a machine type; each retires after its job."""
        live = self.live(pool.name)
        reserved = {
            i.reserved_for: i
            for i in live
            if i.reserved_for is not None and i.state == InstanceState.ACTIVE
        }
        done = await self.db.run(lambda conn: private.finished(conn, list(reserved)))
        for key in done:
            await self.retire(reserved[key], reason="its job-private job ended")
        room = min(pool.max_live_instances, pool.max_instances) - len(live) + len(done)
        room -= self._creating[pool.name]
        if room <= 0 or self._backing_off(pool.name):
            return
        ready = await self.db.run(lambda conn: private.ready_jobs(conn, pool.name, room * 50))
        live_by_user = Counter(i.reserved_user for i in live if i.reserved_user)
        for job in private.choose(ready, live_by_user, room):
            claim = functools.partial(
                private.set_state, key=job.key, old=JobState.READY, new=JobState.CREATING
            )
            if await self.db.run(claim):
                self._creating[pool.name] += 1
                self._tasks.spawn(
                    f"create-{pool.name}", self._create_instance(pool, False, private_job=job)
                )

    def _create(
        self, pool: PoolConfig, count: int, *, standing: bool, preemptible: bool | None = None
    ) -> None:
        """Start ``count`` workers; spot ones if the pool is, unless ``preemptible`` says."""
        spot = pool.preemptible if preemptible is None else preemptible
        for _ in range(max(0, count)):
            self._creating[pool.name] += 1
            if not spot and pool.preemptible:
                self._creating_standard[pool.name] += 1
            self._tasks.spawn(
                f"create-{pool.name}", self._create_instance(pool, standing, preemptible=spot)
            )

    async def _drain(self, live: list[LiveInstance], count: int, now: float) -> None:
        """Take ``count`` instances out: idle ones at once, busy ones once they are empty."""
        for inst in sorted(live, key=lambda i: (bool(i.assigned), i.used_mcpu))[: max(0, count)]:
            inst.draining = True
            if not inst.assigned:
                await self.retire(inst, reason="scaled down")

    async def _retire_idle(self, pool: PoolConfig, live: list[LiveInstance], now: float) -> None:
        n_live = len(live)
        for inst in live:
            if inst.draining and not inst.assigned:
                await self.retire(inst, reason="drained")
                n_live -= 1
                continue
            idle_s = now - inst.idle_since if inst.idle_since is not None else 0.0
            if inst.standing or inst.assigned or idle_s < pool.idle_timeout_s:
                continue
            if n_live > pool.min_instances:
                await self.retire(inst, reason=f"idle for {idle_s:.0f}s")
                n_live -= 1

    async def _create_instance(
        self,
        pool: PoolConfig,
        standing: bool,
        *,
        preemptible: bool | None = None,
        private_job: private.PrivateJob | None = None,
    ) -> None:
        spot = pool.preemptible if preemptible is None else preemptible
        try:
            await self._start_instance(pool, standing, spot, private_job)
        finally:
            if not spot and pool.preemptible:
                self._creating_standard[pool.name] -= 1

    async def _start_instance(
        self,
        pool: PoolConfig,
        standing: bool,
        spot: bool,
        private_job: private.PrivateJob | None,
    ) -> None:
        name = f"{pool.name}-{uuid.uuid4().hex[:8]}"
        cores = pool.worker_cores_mcpu
        if standing and pool.standing_worker_cores_mcpu:
            cores = pool.standing_worker_cores_mcpu
        if private_job is not None:
            cores = private_job.cores_mcpu
        now = time.time()
        inst = LiveInstance(
            name, pool.name, cores, None, "local", standing=standing, preemptible=spot
        )
        if private_job is not None:
            inst.reserved_for, inst.reserved_user = private_job.key, private_job.user
        cloud = self.clouds[pool.cloud]
        registered = False  # counted in _creating until it is in self.instances
        try:
            await self.db.run(
                lambda conn: insert_instance(
                    conn, name=name, pool=pool.name, cores_mcpu=cores, standing=standing, now=now
                )
            )
            self.instances[name] = inst
            self._creating[pool.name] -= 1
            registered = True
            self.bus.publish(InstanceChanged(name, pool.name, str(InstanceState.PENDING)))
            request = InstanceRequest(
                name=name,
                pool=pool.name,
                cores_mcpu=cores,
                token=worker_token(name),
                # a cloud pool's own machine type is in its settings (pools.cloud_config)
                machine_type=private_job.machine_type if private_job else None,
                preemptible=spot,
                boot_delay_s=pool.boot_time_s,
            )
            inst.creating = True
            try:
                created = await cloud.create_instance(request)
            finally:
                inst.creating = False
            inst.address, inst.location = created.address, created.location
            inst.tls_sha256, inst.handle = tls_pin(created.handle), dict(created.handle)
            if not inst.live:  # drained or retired while the cloud made it
                await self.deleter.delete(name, pool.name, inst.handle)
                return
            await self.db.run(
                lambda conn: record_address(
                    conn,
                    name,
                    address=created.address,
                    location=created.location,
                    handle=takeover.stamp(created.handle),  # which key its token came from
                )
            )
        except Exception as exc:
            if not registered:
                self._creating[pool.name] -= 1
                registered = True
            if inst.live:
                await self._creation_failed(pool, inst, exc)
            else:  # retired while the cloud failed to make it: nothing to delete
                await self.deleter.mark_deleted(name, pool.name)
            return
        finally:
            if not registered:
                self._creating[pool.name] -= 1
        await self._bring_up(pool, inst, now + pool.boot_deadline_s, private_job)

    async def _bring_up(
        self,
        pool: PoolConfig,
        inst: LiveInstance,
        deadline: float,
        private_job: private.PrivateJob | None = None,
    ) -> None:
        """Dial a booting worker until it answers (then it is active) or ``deadline`` (wall
        clock) passes (then its VM is deleted, and the pool backs off)."""
        try:
            outcome = await dial_until_up(
                lambda: self.connect(inst), wanted=lambda: inst.live, deadline=deadline
            )
            if outcome == BootOutcome.GONE:
                return
            if outcome == BootOutcome.LATE:
                console = await boot_log_tail(self.clouds[pool.cloud], inst.name)
                raise missed_deadline(inst.name, pool.boot_deadline_s, console)
            now = time.time()
            await self.db.run(lambda conn: activate_instance(conn, inst.name, now=now))
            inst.idle_since = now
            if private_job is not None:  # its worker is up: the job can be placed on it
                await self.db.run(
                    lambda conn: private.set_state(
                        conn, private_job.key, JobState.CREATING, JobState.READY
                    )
                )
            self.bus.publish(InstanceChanged(inst.name, pool.name, str(InstanceState.ACTIVE)))
            self._failures[pool.name] = 0
            self._retry_at.pop(pool.name, None)
            self.problems.pop(pool.name, None)
            self._on_capacity()
        except Exception as exc:
            await self._creation_failed(pool, inst, exc)

    async def _creation_failed(self, pool: PoolConfig, inst: LiveInstance, exc: Exception) -> None:
        self._failures[pool.name] += 1
        failures = self._failures[pool.name]
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, BootFailedError):
            reason = str(exc)  # with the last lines of the VM's serial console
        log.error(
            "could not create worker %s: %s",
            inst.name,
            reason,
            exc_info=not isinstance(exc, LabBatchError),
        )
        if failures >= 3 and not any(i.healthy for i in self.live(pool.name)):
            self.problems[pool.name] = f"pool {pool.name} cannot start workers: {reason}"
        # back off: no new worker of this pool for 1, 2, 4 … 30 s while they cannot start
        delay_s = min(30.0, 2.0 ** (failures - 1))
        self._retry_at[pool.name] = max(
            self._retry_at.get(pool.name, 0.0), time.monotonic() + delay_s
        )
        await self.retire(inst, reason=f"{START_FAILURE}{reason}")

    async def retire(self, inst: LiveInstance, *, reason: str) -> None:
        """Deactivate an instance: delete it, then run its unfinished attempts again elsewhere."""
        if inst.state == InstanceState.DELETING:
            return
        inst.state = InstanceState.DELETING
        self.instances.pop(inst.name, None)
        if inst.conn is not None:
            await inst.conn.send(Shutdown(reason=reason))
            await inst.conn.close()
        now = time.time()
        async with self._write_lock:
            await self.db.run(
                lambda conn: set_instance_state(
                    conn, inst.name, InstanceState.DELETING, reason=reason, now=now
                )
            )
        self.bus.publish(InstanceChanged(inst.name, inst.pool, str(InstanceState.DELETING), reason))
        # Delete first: no attempt may run again while its worker may still be running it (the
        # local cloud's delete returns once the worker's job processes are gone). A delete the
        # cloud refuses stays with the deleter, which tries again until the cloud confirms.
        if inst.creating:
            pass  # the cloud is still making it: _start_instance deletes it when it returns
        elif inst.address is None:  # never made (a failed create removes what it left)
            await self.deleter.mark_deleted(inst.name, inst.pool)
        else:
            await self.deleter.delete(inst.name, inst.pool, inst.handle)

        def requeue(conn: Connection) -> tuple[list[tuple[int, int, int]], Changes]:
            if inst.reserved_for is not None:  # its job still waits for a worker
                private.set_state(conn, inst.reserved_for, JobState.CREATING, JobState.READY)
            refs = open_attempts(conn, inst.name)
            return refs, requeue_attempts(conn, refs, reason=reason, now=now)

        async with self._write_lock:
            refs, changes = await self.db.run(requeue)
        if refs:
            log.warning("worker %s: %s; %d attempt(s) will run again", inst.name, reason, len(refs))
        self._on_changes(changes)
        self._on_capacity()

    async def stop(self) -> list[LiveInstance]:
        """Shut every worker down; returns them so the caller can put their jobs back."""
        self._stopping = True
        instances = list(self.instances.values())
        for inst in instances:
            if inst.conn is not None:
                # a worker that stopped reading must not hold the driver's stop up
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SEND_TIMEOUT_S):
                        await inst.conn.send(Shutdown(reason="driver stopping"))
        # every made VM until the cloud confirms it; one it refuses stays for the next driver
        made = [i for i in instances if i.address is not None and not i.creating]
        await self.deleter.delete_all(
            [(i.name, i.pool, i.handle) for i in made], reason="driver stopped"
        )
        await asyncio.gather(*(cloud.close() for cloud in self.clouds.values()))  # a last sweep
        for inst in instances:
            if inst.conn is not None:
                await inst.conn.close()
        self.instances.clear()
        return instances

    async def drop(self) -> None:
        """Forget the workers without stopping them (another driver takes them over)."""
        self._stopping = True
        for inst in list(self.instances.values()):
            if inst.conn is not None:
                await inst.conn.close()
        self.instances.clear()
        await asyncio.gather(*(cloud.release() for cloud in self.clouds.values()))


def scale_plan(
    conn: Connection,
    pool: PoolConfig,
    live: list[LiveInstance],
    creating: int,
    *,
    only_user: str | None = None,
) -> ScalePlan:
    """The autoscaler's decision for one pool: the heads of the users' queues under fair
    share over the cores it could offer by the end of the next boot, minus live capacity."""
    region = (pool.regions or ("local",))[0]
    settings = PoolSettings(
        name=pool.name,
        worker_cores_mcpu=pool.worker_cores_mcpu,
        zones=tuple(Zone(r, r) for r in (pool.regions or ("local",))),
        min_instances=pool.min_instances,
        max_instances=pool.max_instances,
        max_live_instances=pool.max_live_instances,
        max_new_instances_per_loop=pool.max_new_instances_per_loop,
        standing_worker_cores_mcpu=pool.standing_worker_cores_mcpu,
        boot_time_s=pool.boot_time_s,
        loop_period_s=MONITOR_PERIOD_S,
    )
    instances = [
        PoolInstance(
            i.name,
            0 if i.draining else max(0, i.free_mcpu),
            region,
            booting=i.state == InstanceState.PENDING,
        )
        for i in live
    ]
    instances += [
        PoolInstance(f"creating-{n}", pool.worker_cores_mcpu, region, booting=True)
        for n in range(creating)
    ]
    running: dict[str, int] = defaultdict(int)
    for inst in live:
        for assignment in inst.assigned.values():
            running[assignment.user] += assignment.run.cores_mcpu
    # a spot pool's spot workers serve only jobs that may be preempted (see _create_standard)
    by_user = _READY_SPOT_BY_USER if pool.preemptible else _READY_BY_USER
    ready = {u: int(r) for u, r in conn.execute(by_user, {"b_pool": pool.name})}
    if only_user is not None:
        ready = {u: r for u, r in ready.items() if u == only_user}
    users = {u: (running.get(u, 0), r) for u, r in ready.items()}
    budgets = demand_budget_mcpu(users, settings, instances)
    queues = {}
    for user, budget in budgets.items():
        head = load_head(conn, pool, user, budget)
        standard = standard_only(conn, pool, head)
        jobs = [
            QueuedJob((r.batch_id, r.job_id), r.cores_mcpu)
            for r in head
            if (r.batch_id, r.job_id) not in standard
        ]
        queues[user] = UserQueue(users[user][0], users[user][1], cut_head(jobs, budget))
    n = len(instances)
    return plan_scale_up(queues, settings, instances, n_live=n, n_total=n)


def _standard_demand(conn: Connection, pool: str) -> int:
    """Cores of the pool's Ready jobs that may only run on standard workers."""
    total = conn.execute(
        select(func.sum(Job.cores_mcpu)).where(
            Job.state == str(JobState.READY), Job.pool == pool, Job.preemptible.is_(False)
        )
    ).scalar()
    return int(total or 0)


_READY_BY_USER = (
    select(Job.user, func.sum(Job.cores_mcpu))
    .where(Job.state == str(JobState.READY), Job.pool == bindparam("b_pool"))
    .group_by(Job.user)
)
_READY_SPOT_BY_USER = (
    select(Job.user, func.sum(Job.cores_mcpu))
    .where(
        Job.state == str(JobState.READY),
        Job.pool == bindparam("b_pool"),
        Job.preemptible.is_(True),
    )
    .group_by(Job.user)
)
