"""Everything the desktop asks of the engine, as plain values and events.

The desktop holds one `EngineService`. It owns the database, the event bus, the local runtime
(the driver runs here when this process holds the lease; otherwise the service keeps trying to
take it over) and a sampler that publishes a `MetricsSampled` event about once a second and a
`BatchFinished` event for each batch that ends, whoever drove it. Views call its coroutines and
listen to the bus through their Qt bridge; they never see a database session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app.engine import browse, lease, metrics
from app.engine.batches import file_preview, file_store, frontend, logs, rerun
from app.engine.batches.file_store import StoredFile

# what the views may use of the engine's records (views import the engine only from here)
from app.engine.batches.logs import LogChunk
from app.engine.billing.costs import estimate_on_pool, refreshed_prices
from app.engine.billing.egress import batch_locations, egress_warnings
from app.engine.billing.forecast import Estimate, format_estimate
from app.engine.billing.rates import format_usd
from app.engine.browse import BatchFilter, BatchRow, InstanceRow, JobRow, PoolRow
from app.engine.events import BatchFinished, BudgetPassed, EventBus, MetricsSampled
from app.engine.metrics import Budget, MetricsSample
from app.engine.records import BatchInfo, JobDetail, JobInfo
from app.engine.runtime import LocalRuntime
from app.engine.scheduler.why import explain
from app.engine.tasks import TaskManager
from app.engine.timeline import (
    OUTCOME_COLORS,
    STAGING_COLOR,
    AttemptBar,
    Outcome,
    Timeline,
    load_timeline,
    tick_offsets_s,
)
from app.engine.timeline_html import OUTCOME_LABELS, bar_tip, render_html
from app.engine.worker_caches import WorkerCache, read_worker_caches
from app.engine.workers import pools, scratch_check
from app.engine.workers.pools import (
    CLOUD_BOOT_TIME_S,
    DEFAULT_POOL,
    MACHINE_TYPE_KEY,
    PRIVATE_POOL,
    InstanceInfo,
    PoolConfig,
    machine_type_cores,
)
from app.errors import ConfigError
from app.models.db import Database, data_dir, open_database
from app.models.importers import ImportedDag, import_file
from app.models.spec import BatchSpec, load_dag_file, parse_dag
from app.models.tables import Batch

log = logging.getLogger("labbatch.service")
SAMPLE_EVERY_S = 1.0
COSTS_EVERY_N_SAMPLES = 5  # costs scan every attempt: read them every few samples
STORE_EVERY_S = 10.0  # the lease holder keeps a sample this often for later windows
MEMORY_SAMPLES = 24 * 3600  # one a second for a day, at most


@dataclass(frozen=True, slots=True)
class Forecast:
    """What a DAG is expected to cost and take on each pool its jobs use."""

    spec: BatchSpec
    estimates: tuple[Estimate, ...]
    warnings: tuple[str, ...] = ()  # files across regions or clouds: egress billed

    @property
    def cost_usd_low(self) -> Decimal:
        return sum((e.cost_usd_low for e in self.estimates), Decimal(0))

    @property
    def cost_usd_high(self) -> Decimal:
        return sum((e.cost_usd_high for e in self.estimates), Decimal(0))


class EngineService:
    """The engine as the desktop uses it: one database, one user, the local runtime."""

    def __init__(
        self,
        db: Database,
        *,
        user: str,
        bus: EventBus | None = None,
        drive: bool = True,
        n_workers: int | None = None,
        worker_cores_mcpu: int | None = None,
    ) -> None:
        self.db = db
        self.user = user
        self.bus = bus or EventBus()
        self.runtime = (
            LocalRuntime(
                db,
                bus=self.bus,
                n_workers=n_workers,
                worker_cores_mcpu=worker_cores_mcpu,
                user=user,
            )
            if drive
            else None
        )
        self.samples: deque[metrics.MetricsSample] = deque(maxlen=MEMORY_SAMPLES)
        self._tasks = TaskManager()
        self._n_samples = 0
        self._last_stored = 0.0
        self._last_finished_check = time.time()
        self._reported: deque[int] = deque(maxlen=1000)  # batches a BatchFinished was sent for

    @classmethod
    async def open(cls, url: str | None, *, user: str, **options: Any) -> EngineService:
        """Open (and migrate) the database; the service is not started yet."""
        if not user.strip():
            raise ConfigError("the user name is empty: set one in the settings or with --user")
        return cls(await open_database(url), user=user, **options)

    # -- life -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the last day of samples, start sampling and, where possible, driving."""
        since = time.time() - 24 * 3600
        self.samples.extend(await self.db.read(lambda c: metrics.read_history(c, since=since)))
        self._tasks.every("sampler", self._sample, interval_s=SAMPLE_EVERY_S)
        if self.runtime is not None and not await self.runtime.start():
            self._tasks.every("lease watch", self._try_lease, interval_s=lease.RENEW_EVERY_S)

    async def close(self, *, hand_over: bool = False) -> None:
        """Stop sampling and the driver: its local workers stop and their jobs go back to Ready,
        or, with ``hand_over``, keep running for a `labbatch serve` started here to adopt."""
        await self._tasks.stop()
        if self.runtime is not None:
            if hand_over and self.holds_lease:
                await self.runtime.driver.hand_over()
                start_serve(self.db.url, self.user)
            else:
                await self.runtime.stop()
        await self.db.close()

    async def _try_lease(self) -> None:
        assert self.runtime is not None
        if not self.runtime.driver.has_lease and await self.runtime.start():
            log.info("took over the driver lease")

    @property
    def holds_lease(self) -> bool:
        return self.runtime is not None and self.runtime.driver.has_lease

    @property
    def problem(self) -> str | None:
        """Why the pools cannot run anything (workers fail to start), if they cannot."""
        return self.runtime.driver.problem if self.runtime is not None else None

    @property
    def database(self) -> str:
        return self.db.display

    # -- metrics --------------------------------------------------------------------------------

    async def _sample(self) -> None:
        with_costs = self._n_samples % COSTS_EVERY_N_SAMPLES == 0 or not self.samples
        sample = await self.db.read(lambda c: metrics.read_sample(c, costs=with_costs))
        previous = self.samples[-1] if self.samples else None
        if not with_costs and previous is not None:
            sample = sample.with_costs_of(previous)
        self._n_samples += 1
        self.samples.append(sample)
        self.bus.publish(MetricsSampled(sample))
        if previous is not None and with_costs:
            for project in metrics.budgets_crossed(previous.budgets, sample.budgets):
                budget = sample.budgets[project]
                self.bus.publish(BudgetPassed(project, budget.spent_usd, budget.limit_usd or 0))
        await self._publish_finished()
        if self.holds_lease and sample.time - self._last_stored >= STORE_EVERY_S:
            self._last_stored = sample.time
            await self.db.run(lambda c: metrics.store_sample(c, sample))

    async def _publish_finished(self) -> None:
        # overlap the windows: a batch may commit with a completion time just before ours
        since, self._last_finished_check = self._last_finished_check - 5.0, time.time()
        for row in await self.db.read(lambda c: _finished_since(c, since)):
            if row.id not in self._reported:
                self._reported.append(row.id)
                self.bus.publish(BatchFinished(row.id, row.name, row.user, row.state))

    def history(self, window_s: float) -> list[metrics.MetricsSample]:
        """The samples of the last ``window_s`` seconds, oldest first."""
        since = time.time() - window_s
        return [s for s in self.samples if s.time >= since]

    async def worker_caches(self) -> list[WorkerCache]:
        """Each live worker's input cache: what it holds (known where this process drives)
        and the hits and bytes saved of the attempts that ran there."""
        held = None
        if self.runtime is not None and self.holds_lease:
            instances = self.runtime.driver.instances.values()
            held = {i.name: dict(i.cached_inputs) for i in instances}
        return await read_worker_caches(self.db, held)

    # -- batches --------------------------------------------------------------------------------

    async def find_batches(self, where: browse.BatchFilter) -> list[browse.BatchRow]:
        return await browse.find_batches(self.db, where)

    async def batch(self, batch_id: int) -> browse.BatchRow:
        return await browse.get_batch_row(self.db, batch_id)

    async def cancel_batch(self, batch_id: int) -> BatchInfo:
        info = await frontend.cancel_batch(self.db, batch_id, user=self.user)
        self._poke()
        return info

    async def retry_batch(self, batch_id: int, *, failed_only: bool = True) -> int:
        n = await rerun.retry_batch(self.db, batch_id, user=self.user, failed_only=failed_only)
        self._poke()
        return n

    async def delete_batch(self, batch_id: int) -> None:
        await browse.delete_batch(self.db, batch_id, user=self.user)
        self._poke()

    # -- jobs -----------------------------------------------------------------------------------

    async def count_jobs(self, batch_id: int, *, state: str | None = None) -> int:
        return await browse.count_jobs(self.db, batch_id, state=state)

    async def job_page(
        self, batch_id: int, *, offset: int, limit: int, state: str | None = None
    ) -> list[browse.JobRow]:
        return await browse.job_page(self.db, batch_id, offset=offset, limit=limit, state=state)

    async def job_detail(self, batch_id: int, job_id: int) -> JobDetail:
        return await frontend.job_detail(self.db, batch_id, job_id)

    async def timeline(self, batch_id: int) -> Timeline:
        """A batch's attempts by worker over time (as `labbatch timeline`)."""
        return await load_timeline(self.db, batch_id)

    async def why(self, batch_id: int, job_id: int) -> str:
        return await explain(self.db, batch_id, job_id)

    async def read_log(self, batch_id: int, job_id: int, *, offset: int = 0) -> logs.LogChunk:
        return await logs.read_log(self.db, batch_id, job_id, offset=offset)

    async def job_nodes(self, batch_id: int) -> dict[int, str]:
        return await browse.job_nodes(self.db, batch_id)

    async def job_states(self, batch_id: int) -> dict[int, str]:
        return await browse.job_states(self.db, batch_id)

    async def retry_jobs(
        self,
        batch_id: int,
        job_ids: list[int],
        *,
        memory_factor: float = 1.0,
        non_preemptible: bool = False,
    ) -> int:
        """Run failed jobs again (as they were, with more memory, or on standard workers)."""
        n = await rerun.retry_jobs(
            self.db,
            batch_id,
            job_ids,
            user=self.user,
            memory_factor=memory_factor,
            non_preemptible=non_preemptible,
        )
        self._poke()
        return n

    # -- submitting -----------------------------------------------------------------------------

    async def batch_files(self, batch_id: int) -> list[StoredFile]:
        """The output files of a batch's jobs: where they are and their sizes."""
        return await file_store.batch_files(self.db, batch_id)

    async def save_output(self, batch_id: int, ref: str, dest: str) -> list[Path]:
        """Copy a job output (`JOB.OUTPUT`; a group: each member) to `dest`."""
        return await file_store.get_file(self.db, batch_id, ref, dest)

    async def output_preview(self, where: str, n_lines: int = 20) -> str | None:
        """The first lines of a kept output file, or None when it is not text."""
        return await asyncio.to_thread(file_preview.first_lines, where, n_lines)

    async def load_dag(self, path: str | Path) -> BatchSpec:
        """Read and validate a DAG file off the event loop; DagFileError lists every problem."""
        return await asyncio.to_thread(load_dag_file, path)

    async def forecast(self, spec: BatchSpec) -> Forecast:
        """The expected cost and time of a DAG on the pools its jobs name."""
        by_pool: dict[str, list[Any]] = {}
        for job in spec.jobs:
            by_pool.setdefault(job.pool or DEFAULT_POOL, []).append(job)
        configs = {name: await pools.get_pool(self.db, name) for name in sorted(by_pool)}
        refreshed = await self.db.read(refreshed_prices)  # catalogue prices over the files'

        def estimate() -> tuple[Estimate, ...]:
            return tuple(
                estimate_on_pool(by_pool[n], configs[n], refreshed=refreshed)
                for n in sorted(by_pool)
            )

        estimates = await asyncio.to_thread(estimate)
        found = batch_locations(spec)
        warnings: list[str] = []
        for name in sorted(by_pool):
            pool = configs[name]
            warnings += await egress_warnings(
                pool.name, pool.cloud, pool.regions, pool.config, found
            )
        return Forecast(spec, estimates, tuple(warnings))

    async def parse_dag_data(self, data: Any, *, source: str) -> BatchSpec:
        """Validate DAG data (a drawn DAG) and expand its scatter jobs, off the event loop."""
        return await asyncio.to_thread(parse_dag, data, source=source)

    async def import_dag(self, path: str | Path) -> ImportedDag:
        """Read a DAG from a hailtop.batch-style script, GraphML, DOT, YAML or JSON file, off
        the event loop (a script runs in a process of its own); DagFileError lists problems."""
        return await asyncio.to_thread(import_file, path)

    async def submit(self, spec: BatchSpec) -> int:
        batch_id = await frontend.submit_batch(self.db, spec, user=self.user)
        self._poke()
        return batch_id

    # -- pools ----------------------------------------------------------------------------------

    async def pools(self) -> list[browse.PoolRow]:
        return await browse.pools_with_instances(self.db)

    async def create_pool(self, pool: PoolConfig) -> PoolConfig:
        """Store a new pool (as `labbatch pool create`); ConfigError says what is wrong."""
        created = await pools.create_pool(self.db, pool)
        self._poke()
        return created

    async def check_scratch(self, pool: PoolConfig) -> tuple[str, ...]:
        """Ask a cloud pool's storage whether its scratch location exists and is writable
        (as `labbatch pool create` does): ConfigError says what is wrong; returns the
        warnings (a bucket in another region: egress billed)."""
        checked = await scratch_check.check_scratch(pool)
        return checked.warnings if checked else ()

    async def scale_pool(self, name: str, target: int) -> PoolConfig:
        """Create or drain workers until the pool has ``target`` (as `labbatch pool scale`)."""
        pool = await pools.scale_pool(self.db, name, target)
        self._poke()
        return pool

    async def release_scale(self, name: str) -> PoolConfig:
        """Let the autoscaler size the pool again (as `labbatch pool scale NAME auto`)."""
        pool = await pools.release_scale(self.db, name)
        self._poke()
        return pool

    async def add_workers(self, name: str, delta: int) -> PoolConfig:
        """One click on + or -: scale to the live workers plus ``delta``."""
        live = await pools.count_live(self.db, name)
        return await self.scale_pool(name, live + delta)

    async def set_pool(self, name: str, **changes: Any) -> PoolConfig:
        pool = await pools.set_pool(self.db, name, **changes)
        self._poke()
        return pool

    async def drain_pool(self, name: str) -> PoolConfig:
        """Start no new workers and retire the live ones as their jobs finish.

        Raise the pool's max live instances again to resume.
        """
        pool = await pools.set_pool(self.db, name, min_instances=0, max_live_instances=0)
        self._poke()
        return pool

    async def default_pool(self) -> PoolConfig:
        return await pools.get_pool(self.db, DEFAULT_POOL)

    def _poke(self) -> None:
        if self.runtime is not None:
            self.runtime.notify_changed()


def start_serve(url: str, user: str) -> int:
    """Start `labbatch serve` on this database, detached from this process; returns its pid."""
    log_path = data_dir() / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LABBATCH_USER=user)
    pid = os.posix_spawn(
        sys.executable,
        [sys.executable, "-m", "app", "serve", "--db", url],
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,  # it outlives the desktop
    )
    log.info("handed the pools over to labbatch serve (pid %d, log %s)", pid, log_path)
    return pid


def _finished_since(conn: Connection, since: float) -> list[Any]:
    return list(
        conn.execute(
            select(Batch.id, Batch.name, Batch.user, Batch.state)
            .where(Batch.complete.is_(True), Batch.time_completed >= since)
            .order_by(Batch.id)
        )
    )


__all__ = [
    "CLOUD_BOOT_TIME_S",
    "DEFAULT_POOL",
    "MACHINE_TYPE_KEY",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "PRIVATE_POOL",
    "STAGING_COLOR",
    "AttemptBar",
    "BatchFilter",
    "BatchInfo",
    "BatchRow",
    "Budget",
    "EngineService",
    "InstanceInfo",
    "InstanceRow",
    "JobDetail",
    "JobInfo",
    "JobRow",
    "LogChunk",
    "MetricsSample",
    "Outcome",
    "PoolConfig",
    "PoolRow",
    "StoredFile",
    "Timeline",
    "WorkerCache",
    "bar_tip",
    "format_estimate",
    "format_usd",
    "machine_type_cores",
    "render_html",
    "tick_offsets_s",
]
