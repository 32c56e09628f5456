"""The driver: holds the lease and runs the loops that move jobs through their states.

Loops (tasks of one TaskManager): the pass (workers' reports in, Ready jobs out, one
transaction), the canceller, the fleet monitor (health, autoscaling, idle retirement), the
change-marker poller (work and settings stored by other processes) and the lease renewer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from app.clouds.base import CloudDriver
from app.engine import lease
from app.engine.batches.cloud_scratch import remove_expired_cloud_files
from app.engine.batches.completion import Changes, JobEnd, chunks, end_jobs
from app.engine.batches.counters import repair_counters
from app.engine.batches.file_store import remove_expired_files
from app.engine.batches.files import scratch_root, transfers
from app.engine.batches.results import apply_results, record_starts
from app.engine.batches.signing import PoolStorages, Signer
from app.engine.billing.costs import pool_quantities, record_quantities, sync_rates
from app.engine.billing.projects import cancel_over_limit
from app.engine.billing.rates import Rate
from app.engine.events import BatchChanged, EventBus, JobsChanged, LeaseChanged
from app.engine.marker import read_marker
from app.engine.scheduler.planner import MIN_JOB_MCPU, DemandCache, place_private, plan_pool
from app.engine.tasks import TaskManager, Trigger
from app.engine.workers import sharing, takeover
from app.engine.workers.connection import WorkerConnection
from app.engine.workers.fleet import MONITOR_PERIOD_S, Fleet
from app.engine.workers.instances import (
    Assignment,
    LiveInstance,
    open_attempts,
    requeue_attempts,
    set_instance_state,
)
from app.engine.workers.pools import PoolConfig, read_pools
from app.models.bulk import bulk_insert
from app.models.db import JOB_PRIVATE_POOL, Database
from app.models.db import data_dir as default_data_dir
from app.models.prepared import Prepared
from app.models.tables import Batch, InstanceState, Job, JobState, attempts_table, jobs_table
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
    Started,
)

log = logging.getLogger("labbatch.driver")
_jobs = jobs_table

MARKER_POLL_S = 0.2
BILLING_CHECK_S = float(os.environ.get("LABBATCH_BILLING_CHECK_S", "5"))
FILES_SWEEP_S = float(os.environ.get("LABBATCH_FILES_SWEEP_S", "600"))
# A pass has a fixed cost (one transaction); waiting this long after one lets reports pile up
# so the next pass carries several. A chain's next report comes later than this anyway.
PASS_MIN_INTERVAL_S = float(os.environ.get("LABBATCH_PASS_INTERVAL_S", "0.002"))


class Driver:
    """Runs the driver loops for every pool whose cloud it has, while it holds the lease."""

    def __init__(
        self,
        db: Database,
        clouds: Mapping[str, CloudDriver],
        *,
        bus: EventBus | None = None,
        batch_dir: Callable[[int], str | None] = lambda _batch_id: None,
        pool_overrides: Mapping[str, Mapping[str, Any]] | None = None,
        owner: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.db = db
        self.data_dir = data_dir or default_data_dir()
        self.bus = bus or EventBus()
        self.batch_dir = batch_dir
        self.holder = lease.new_holder_id(owner)
        self.has_lease = False
        self._overrides = dict(pool_overrides or {})
        self.owner = owner  # the user whose machine runs the local pools (see sharing.py)
        self._tasks = TaskManager()
        self._write_lock = asyncio.Lock()
        self.fleet = Fleet(
            db,
            clouds,
            bus=self.bus,
            tasks=self._tasks,
            write_lock=self._write_lock,
            on_changes=self._publish,
            on_capacity=self.notify_changed,
        )
        self.fleet.handle_messages(self._on_message)
        self._results: list[tuple[str, JobResult]] = []
        self._starts: list[JobStart] = []
        self._cancel_sent: set[tuple[int, int, int]] = set()
        self._deficits: dict[str, dict[str, int]] = defaultdict(dict)
        self._rates: dict[str, Rate] = {}
        self._demand: dict[str, DemandCache] = defaultdict(DemandCache)
        self._demand_stale = True
        self._quantities: dict[tuple[str, int, int, bool], dict[str, Decimal]] = {}
        self._stopping = False
        self._abdication: asyncio.Future[None] | None = None
        self.takeover_refused: str | None = None  # why this process may not drive, if so
        self._marker = -1
        self._scheduler: Trigger | None = None
        self._canceller: Trigger | None = None
        self._monitor: Trigger | None = None
        # cloud pools' files: signed URLs for exactly each attempt's inputs and outputs
        self._signer = Signer(PoolStorages(lambda pool: self.fleet.pools.get(pool)))

    @property
    def instances(self) -> dict[str, LiveInstance]:
        return self.fleet.instances

    @property
    def problem(self) -> str | None:
        """Why a pool cannot run anything at all (workers fail to start, or this process may
        not take the pools over), for the user."""
        return self.takeover_refused or next(iter(self.fleet.problems.values()), None)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, *, wait_for_lease: bool = False) -> bool:
        """Take the lease and start the loops; False if another process holds the lease."""
        while not await lease.try_acquire(self.db, self.holder):
            if not wait_for_lease:
                return False
            await asyncio.sleep(lease.RENEW_EVERY_S)
        await self._load_pools()
        if not await self._keys_match(raise_refusal=wait_for_lease):
            return False
        self.has_lease = True
        self.bus.publish(LeaseChanged(held=True))
        self._marker = await read_marker(self.db)
        await self.db.run(lambda conn: repair_counters(conn, time.time()))
        await self.fleet.recover(self._job_run)
        t = self._tasks
        self._scheduler = t.every(
            "pass", self._pass, interval_s=1.0, min_interval_s=PASS_MIN_INTERVAL_S
        )
        self._canceller = t.every("canceller", self._cancel_running, interval_s=2.0)
        self._monitor = t.every("monitor", self.fleet.watch, interval_s=MONITOR_PERIOD_S)
        t.every("marker", self._poll_marker, interval_s=MARKER_POLL_S)
        t.every("lease", self._renew_lease, interval_s=lease.RENEW_EVERY_S)
        t.every("billing", self._enforce_limits, interval_s=BILLING_CHECK_S)
        t.every("files", self._remove_expired_files, interval_s=FILES_SWEEP_S)
        return True

    async def _keys_match(self, *, raise_refusal: bool) -> bool:
        """Hand the lease back if live workers hold tokens of another master key."""
        try:
            await takeover.check_keys(self.db, list(self.fleet.pools))
        except takeover.TakeoverRefusedError as exc:
            await lease.release(self.db, self.holder)
            if self.takeover_refused != str(exc):
                log.error("%s", exc)
            self.takeover_refused = str(exc)
            if raise_refusal:
                raise
            return False
        self.takeover_refused = None
        return True

    async def stop(self) -> None:
        """Stop the loops and the workers; unfinished attempts go back to Ready for later."""
        if self._abdication is not None:
            await self._abdication
            return
        self._stopping = True
        await self._tasks.stop()
        now = time.time()
        instances = await self.fleet.stop()
        if not self.has_lease:
            return

        def put_back(conn: Connection) -> None:
            for inst in instances:
                refs = open_attempts(conn, inst.name)
                requeue_attempts(conn, refs, reason="driver stopped", now=now, charge=False)
                if inst.name in self.fleet.deleter.pending:
                    continue  # its VM is not deleted yet: the next driver tries again
                set_instance_state(
                    conn, inst.name, InstanceState.DELETED, reason="driver stopped", now=now
                )

        async with self._write_lock:
            await self.db.run(put_back)
        await lease.release(self.db, self.holder)
        self.has_lease = False

    async def hand_over(self) -> None:
        """Stop driving but leave the workers running, and free the lease at once so that
        another process (`labbatch serve`) takes the pools over and adopts the workers."""
        if not self.has_lease:
            await self.stop()
            return
        # recorded like a lost lease, so that a later stop() leaves the workers alone
        self._abdication = asyncio.ensure_future(self._abdicate())
        await self._abdication
        await lease.release(self.db, self.holder)

    def notify_changed(self) -> None:
        """New work, capacity or a cancel: look now, not at the next poll."""
        for trigger in (self._scheduler, self._canceller, self._monitor):
            if trigger is not None:
                trigger.poke()

    async def _load_pools(self) -> None:
        pools = await self.db.run(read_pools)
        for name, changes in self._overrides.items():
            if name in pools:
                pools[name] = _with(pools[name], changes)
        self.fleet.pools = pools
        lab = sharing.is_lab(self.db)
        self.fleet.only_user = {
            name: user
            for name, pool in pools.items()
            if (user := sharing.runs_only(pool, self.owner, lab=lab)) is not None
        }
        self._rates = await self.db.run(lambda conn: sync_rates(conn, pools.values()))
        self._quantities.clear()

    # -- messages -------------------------------------------------------------------------

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
            if message.cached is not None:  # keys are "<location>#<generation or ETag>"
                inst.cached_inputs = {k.rsplit("#", 1)[0]: n for k, n in message.cached.items()}
        elif isinstance(message, Hello):
            self._on_hello(inst, conn, message)
        elif isinstance(message, Retiring):
            self._tasks.spawn(f"retire-{inst.name}", self.fleet.retire(inst, reason="idle"))

    def _on_hello(self, inst: LiveInstance, conn: WorkerConnection, hello: Hello) -> None:
        if not self.fleet.said_hello(inst, conn, hello.version):
            return  # another release's worker: connect() refuses it, and it is replaced
        known = {s.ref.key() for s in hello.running} | {r.ref.key() for r in hello.finished}
        if hello.finished:
            self._results.extend((inst.name, r) for r in hello.finished)
        missing = [a.run for key, a in inst.assigned.items() if key not in known]
        if missing:
            self._tasks.spawn(f"resend-{inst.name}", self._send_runs(inst, missing))
        self._poke(self._scheduler)

    @staticmethod
    def _poke(trigger: Trigger | None) -> None:
        if trigger is not None:
            trigger.poke()

    # -- the pass: reports in, jobs out ----------------------------------------------------

    async def _pass(self) -> None:
        """Store every report that arrived, then place Ready jobs on the free cores.

        Both happen in one transaction: a finished job's child is placed in the same commit
        that ends its parent, so a chain costs one commit per link and a burst of
        completions costs one commit in all.
        """
        healthy = [i for i in self.instances.values() if i.healthy]
        if not self._results and not self._starts and not _room_for_a_job(healthy, time.time()):
            # Nothing to store and nowhere to place: under a stream of short jobs a third of
            # the passes were such empty transactions (the poke after each placing pass).
            return
        results, self._results = self._results, []
        starts, self._starts = self._starts, []
        now = time.time()
        released = self._release(results, now)
        try:
            ended = {r.ref.key() for _name, r in results}
            # a result carries its start time: nine in ten starts of no-op jobs arrive in the
            # same pass as their result, and need no statement of their own
            unended = [s for s in starts if s.ref.key() not in ended]

            def transaction(conn: Connection) -> tuple[Changes, dict[str, list[Assignment]]]:
                record_starts(conn, unended)
                changes = apply_results(conn, [r for _name, r in results], now)
                if changes.n_ready:
                    self._demand_stale = True  # new Ready jobs: re-read the queues' demand
                placed, unplaceable = self._place_ready(conn, healthy, now)
                self._mark_running(conn, placed, now)
                changes.merge(end_jobs(conn, unplaceable, now))
                return changes, placed

            async with self._write_lock:
                changes, placed = await self.db.run(transaction)
        except BaseException:
            for inst, assignment in released:  # nothing was stored: try again next pass
                inst.assign(assignment)
            self._results[:0] = results
            self._starts[:0] = starts
            raise
        for name, assignments in placed.items():
            for assignment in assignments:
                self.instances[name].assign(assignment)
        await asyncio.gather(
            *(
                self._send_runs(self.instances[n], [a.run for a in assignments])
                for n, assignments in placed.items()
            ),
            self._send_acks(results),
        )
        if placed:
            changes.n_jobs_changed += sum(len(a) for a in placed.values())
            changes.batches |= {a.run.batch_id for group in placed.values() for a in group}
            self._poke(self._scheduler)  # there may be more Ready jobs than one pass took
        self._publish(changes)
        if changes.cancelled_batches:
            self._poke(self._canceller)

    def _release(
        self, results: list[tuple[str, JobResult]], now: float
    ) -> list[tuple[LiveInstance, Assignment]]:
        """Give the cores of finished attempts back (returned so a failed pass can undo it)."""
        released = []
        for name, result in results:
            inst = self.instances.get(name)
            key = result.ref.key()
            if inst is not None:
                inst.ran(result.start_time, result.end_time)
                assignment = inst.release(key, now)
                if assignment is not None:
                    released.append((inst, assignment))
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
    ) -> tuple[dict[str, list[Assignment]], list[JobEnd]]:
        """Each pool's plan: fair share among users, best fit; impossible jobs end Error."""
        placed: dict[str, list[Assignment]] = defaultdict(list)
        unplaceable: list[JobEnd] = []
        by_pool: dict[str, list[LiveInstance]] = defaultdict(list)
        for inst in healthy:
            by_pool[inst.pool].append(inst)
        for pool_name, instances in by_pool.items():
            if pool_name == JOB_PRIVATE_POOL:
                plan = place_private(conn, instances, build_run=self._job_run)
                for name, assignments in plan.placed.items():
                    placed[name].extend(assignments)
                continue
            running: dict[str, int] = defaultdict(int)
            for inst in self.fleet.live(pool_name):
                for assignment in inst.assigned.values():
                    running[assignment.user] += assignment.run.cores_mcpu
            plan = plan_pool(
                conn,
                self.fleet.pools[pool_name],
                instances,
                self._deficits[pool_name],
                running_mcpu=running,
                build_run=self._job_run,
                now=now,
                demand=self._demand[pool_name],
                refresh=self._demand_stale,
                only_user=self.fleet.only_user.get(pool_name),
            )
            for name, assignments in plan.placed.items():
                placed[name].extend(assignments)
            unplaceable.extend(plan.unplaceable)
        self._demand_stale = False
        return placed, unplaceable

    def _mark_running(
        self, conn: Connection, placed: dict[str, list[Assignment]], now: float
    ) -> None:
        """Mark the placed jobs Running and insert their attempts. A placement whose job is no
        longer Ready (a front end cancelled it meanwhile), or a second placement of one job,
        is dropped from ``placed``: its attempt is not stored and nothing is sent."""
        seen: set[tuple[int, int]] = set()
        for assignments in placed.values():
            kept = []
            for a in assignments:
                key = (a.run.batch_id, a.run.job_id)
                if key in seen:
                    log.warning("job %d.%d was placed twice in one pass; kept once", *key)
                    continue
                seen.add(key)
                kept.append(a)
            assignments[:] = kept
        rows = [
            {"b_b": a.run.batch_id, "b_j": a.run.job_id, "b_a": a.run.attempt, "b_i": name}
            for name, assignments in placed.items()
            for a in assignments
        ]
        if not rows:
            return
        n_marked = _SET_RUNNING.executemany(conn, [{**r, "b_now": now} for r in rows])
        # One row per job, each updated at most once: a full count means all were marked, and
        # reading each one back is needed only for a shortfall.
        if n_marked != len(rows) and len(marked := _marked_running(conn, rows)) < len(rows):
            for name, assignments in placed.items():
                assignments[:] = [
                    a for a in assignments if (a.run.batch_id, a.run.job_id, name) in marked
                ]
            rows = [r for r in rows if (r["b_b"], r["b_j"], r["b_i"]) in marked]
        bulk_insert(
            conn,
            attempts_table,
            ("batch_id", "job_id", "attempt", "instance_name", "time_scheduled"),
            [(r["b_b"], r["b_j"], r["b_a"], r["b_i"], now) for r in rows],
        )
        record_quantities(
            conn,
            [
                (a.run.batch_id, a.run.job_id, a.run.attempt, self._quantities_of(name, a.run))
                for name, assignments in placed.items()
                for a in assignments
            ],
            self._rates,
        )

    def _quantities_of(self, instance_name: str, run: JobRun) -> dict[str, Decimal]:
        """What an attempt bills per hour (cached per pool and job shape)."""
        inst = self.instances[instance_name]
        pool = self.fleet.pools[inst.pool]
        # a spot pool's standard workers (for jobs that may not be preempted) bill standard
        spot = pool.preemptible and inst.preemptible
        shape = (pool.name, run.cores_mcpu, run.memory_bytes or 0, spot)
        quantities = self._quantities.get(shape)
        if quantities is None:
            quantities = self._quantities[shape] = pool_quantities(
                pool,
                cores_mcpu=run.cores_mcpu,
                memory_bytes=run.memory_bytes or 0,
                storage_bytes=0,
                preemptible=spot,
            )
        return quantities

    def _job_run(self, row: Any, attempt: int) -> JobRun:
        spec = row.spec
        files = spec.get("files")
        extra = transfers(files, row.batch_id, row.job_id, self._scratch_of) if files else {}
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
            **extra,
        )

    def _scratch_of(self, pool: str) -> str:
        """Where a pool keeps its jobs' output files."""
        config = self.fleet.pools.get(pool)
        return scratch_root(config.scratch if config else None, self.data_dir)

    async def _send_runs(self, inst: LiveInstance, runs: list[JobRun]) -> None:
        if inst.conn is None:
            return
        runs = await self._signer.sign_runs(inst.pool, runs)
        conn = inst.conn
        if conn is None or not await conn.send(Schedule(jobs=runs)):
            return  # sent again when the worker says hello again
        for run in runs:
            assignment = inst.assigned.get(run.ref.key())
            if assignment is not None:
                assignment.sent_on = conn.id

    # -- cancel, marker, lease ------------------------------------------------------------

    async def _cancel_running(self) -> None:
        """Kill the Running jobs of cancelled batches (always_run jobs keep running)."""

        def read(conn: Connection) -> list[Any]:
            return list(conn.execute(_RUNNING_CANCELLED))

        targets: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for b, j, a, name in await self.db.run(read):
            if name is not None and (b, j, a) not in self._cancel_sent:
                targets[name].append((b, j, a))
        for name, keys in targets.items():
            inst = self.instances.get(name)
            if inst is None or inst.conn is None:
                continue
            if await inst.conn.send(Cancel(attempts=[AttemptRef(*k) for k in keys])):
                self._cancel_sent.update(keys)

    async def _enforce_limits(self) -> None:
        """Cancel the running batches of billing projects that reached their limits."""
        now = time.time()
        async with self._write_lock:
            changes = await self.db.run(lambda conn: cancel_over_limit(conn, now))
        if changes.cancelled_batches:
            self._publish(changes)
            self._poke(self._canceller)

    async def _remove_expired_files(self) -> None:
        n_removed = await remove_expired_files(self.db, home=self.data_dir)
        if n_removed:
            log.info("removed the scratch files of %d batch(es) past their retention", n_removed)
        try:  # cloud errors are logged per location inside; this is for the unexpected
            n_objects = await remove_expired_cloud_files(self.db)
        except Exception:
            log.exception("the sweep of the cloud scratch locations failed; it runs again later")
            return
        if n_objects:
            log.info("removed %d cloud scratch object(s) of deleted or expired batches", n_objects)

    async def _poll_marker(self) -> None:
        marker = await read_marker(self.db)
        if marker == self._marker:
            return
        self._marker = marker
        self._demand_stale = True  # another process submitted or cancelled
        await self._load_pools()
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
        await self.fleet.drop()
        self.bus.publish(LeaseChanged(held=False))

    def _publish(self, changes: Changes) -> None:
        for batch_id in sorted(changes.batches):
            complete = batch_id in changes.completed_batches
            self.bus.publish(JobsChanged(batch_id, changes.n_jobs_changed))
            self.bus.publish(
                BatchChanged(batch_id, "complete" if complete else "running", complete)
            )


def _room_for_a_job(instances: list[LiveInstance], now: float) -> bool:
    """Whether some instance has the cores of the smallest job free, or may queue it (else no
    pool places)."""
    return any(i.free_mcpu + i.queue_mcpu(now) >= MIN_JOB_MCPU for i in instances)


def _with(pool: PoolConfig, changes: Mapping[str, Any]) -> PoolConfig:
    return replace(pool, **changes)


_RUNNING_CANCELLED = (
    select(Job.batch_id, Job.job_id, Job.last_attempt, Job.instance_name)
    .join(Batch, Batch.id == Job.batch_id)
    .where(
        Batch.cancelled.is_(True),
        Batch.complete.is_(False),
        Job.state == str(JobState.RUNNING),
        Job.always_run.is_(False),
    )
)
_SET_RUNNING = Prepared(
    update(_jobs)
    .where(
        _jobs.c.batch_id == bindparam("b_b"),
        _jobs.c.job_id == bindparam("b_j"),
        # a job that a front end cancelled meanwhile stays Cancelled (PostgreSQL: no lock)
        _jobs.c.state == str(JobState.READY),
    )
    .values(
        state=str(JobState.RUNNING),
        n_attempts=_jobs.c.n_attempts + 1,
        last_attempt=bindparam("b_a"),
        instance_name=bindparam("b_i"),
        time_started=bindparam("b_now"),
    )
)


def _marked_running(conn: Connection, rows: list[dict[str, Any]]) -> set[tuple[int, int, str]]:
    """(batch, job, instance) of the rows that `_SET_RUNNING` did mark: Running there now,
    at that attempt."""
    wanted = {(r["b_b"], r["b_j"]): (r["b_a"], r["b_i"]) for r in rows}
    marked: set[tuple[int, int, str]] = set()
    by_batch: dict[int, list[int]] = defaultdict(list)
    for batch_id, job_id in wanted:
        by_batch[batch_id].append(job_id)
    for batch_id, job_ids in by_batch.items():
        for part in chunks(job_ids):
            for row in conn.execute(
                select(Job.job_id, Job.state, Job.last_attempt, Job.instance_name).where(
                    Job.batch_id == batch_id, Job.job_id.in_(part)
                )
            ):
                attempt, name = wanted[(batch_id, row.job_id)]
                if (
                    row.state == JobState.RUNNING
                    and row.last_attempt == attempt
                    and row.instance_name == name
                ):
                    marked.add((batch_id, row.job_id, name))
    return marked


__all__ = ["Driver"]
