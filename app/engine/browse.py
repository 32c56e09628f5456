"""What the desktop lists: batches with filters and cost, pages of jobs, pools with instances."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from app.engine.batches.cloud_scratch import remove_cloud_batch_files
from app.engine.batches.completion import Changes, cancel_batch_jobs
from app.engine.batches.file_store import remove_batch_files
from app.engine.batches.frontend import (
    BATCH_COLUMNS,
    JOB_INFO_COLUMNS,
    batch_info,
    job_info,
    locked_batch,
    parse_job_state,
)
from app.engine.billing.costs import (
    costs_by,
    running_usd_per_hour_by_instance,
)
from app.engine.marker import bump_marker
from app.engine.records import BatchInfo, JobInfo
from app.engine.workers.pools import (
    SHOWN_STATES,
    InstanceInfo,
    PoolConfig,
    instance_info,
    last_start_failures,
    read_pools,
)
from app.errors import NotFoundError, UserError
from app.models.db import Database
from app.models.tables import Batch, Instance, InstanceState, Job, JobLog, JobState


@dataclass(frozen=True, slots=True)
class BatchFilter:
    """Which batches a list shows; empty fields match everything."""

    user: str | None = None
    state: str | None = None
    text: str = ""  # part of the name, or key=value of an attribute
    limit: int = 500


@dataclass(frozen=True, slots=True)
class BatchRow:
    """A batch with what it has cost so far."""

    batch: BatchInfo
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job with what its attempts have cost so far."""

    job: JobInfo
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """A live worker with the cores its jobs use and what it has cost."""

    instance: InstanceInfo
    used_mcpu: int
    cost_usd: Decimal  # its attempts at their recorded rates, as `labbatch cost` counts
    cost_usd_per_hour: Decimal = Decimal(0)  # of the attempts running on it now

    @property
    def free_mcpu(self) -> int:
        return max(0, self.instance.cores_mcpu - self.used_mcpu)


@dataclass(frozen=True, slots=True)
class PoolRow:
    """A pool's settings and its live instances."""

    pool: PoolConfig
    instances: tuple[InstanceRow, ...]
    last_failure: str | None = None  # why its latest worker could not start (none since)

    @property
    def n_live(self) -> int:
        """Booting and active workers (not the ones being deleted)."""
        return sum(1 for i in self.instances if i.instance.state != InstanceState.DELETING)


BATCH_STATES = ("running", "success", "failure", "cancelled")


async def find_batches(db: Database, where: BatchFilter) -> list[BatchRow]:
    """The newest batches that match, each with its cost."""

    def read(conn: Connection) -> list[BatchRow]:
        query = (
            select(*BATCH_COLUMNS)
            .where(Batch.deleted.is_(False))
            .order_by(Batch.id.desc())
            .limit(where.limit)
        )
        if where.user:
            query = query.where(Batch.user == where.user)
        if where.state:
            state = where.state.lower()
            if state not in BATCH_STATES:
                raise UserError(f"unknown batch state {where.state!r}: one of {BATCH_STATES}")
            query = query.where(func.lower(Batch.state) == state)
        text = where.text.strip()
        if "=" in text:
            key, _, value = text.partition("=")
            query = query.where(Batch.attributes[key.strip()].as_string() == value.strip())
        elif text:
            query = query.where(Batch.name.contains(text, autoescape=True))
        batches = [batch_info(row) for row in conn.execute(query)]
        costs = costs_by(conn, "batch", batch_ids=[b.id for b in batches]) if batches else {}
        return [BatchRow(b, costs.get(b.id, Decimal(0))) for b in batches]

    return await db.read(read)


async def count_jobs(db: Database, batch_id: int, *, state: str | None = None) -> int:
    """How many jobs a batch has (of one state)."""

    def read(conn: Connection) -> int:
        query = select(func.count()).select_from(Job).where(Job.batch_id == batch_id)
        if state is not None:
            query = query.where(Job.state == parse_job_state(state))
        return int(conn.execute(query).scalar_one())

    return await db.read(read)


async def job_page(
    db: Database, batch_id: int, *, offset: int, limit: int, state: str | None = None
) -> list[JobRow]:
    """One page of a batch's jobs in id order, each with its cost."""

    def read(conn: Connection) -> list[JobRow]:
        query = select(*JOB_INFO_COLUMNS).where(Job.batch_id == batch_id)
        if state is not None:
            query = query.where(Job.state == parse_job_state(state))
        query = query.order_by(Job.job_id).offset(offset).limit(limit)
        jobs = [job_info(row) for row in conn.execute(query)]
        if not jobs:
            return []
        costs = costs_by(conn, "job", batch_id=batch_id, job_ids=(jobs[0].job_id, jobs[-1].job_id))
        return [JobRow(j, costs.get(j.job_id, Decimal(0))) for j in jobs]

    return await db.read(read)


async def delete_batch(db: Database, batch_id: int, *, user: str) -> None:
    """Remove a batch from the lists and drop its logs; its cost stays in the spend figures.

    A running batch is cancelled first: its running jobs are killed by the driver.
    """
    now = time.time()

    def store(conn: Connection) -> None:
        batch = locked_batch(conn, batch_id)
        if batch.user != user:
            raise UserError(f"batch {batch_id} belongs to {batch.user}; only they can delete it")
        complete = conn.execute(select(Batch.complete).where(Batch.id == batch_id)).scalar_one()
        if not complete:
            cancel_batch_jobs(conn, batch_id, now, Changes())
        conn.execute(delete(JobLog).where(JobLog.batch_id == batch_id))
        conn.execute(update(Batch).where(Batch.id == batch_id).values(deleted=True))
        bump_marker(conn)

    await db.run(store)
    await remove_batch_files(db, batch_id)  # what a running job saves later: the next sweep
    await remove_cloud_batch_files(db, batch_id)


async def pools_with_instances(db: Database) -> list[PoolRow]:
    """Every pool with its live instances, the cores their jobs use and their cost so far."""

    def read(conn: Connection) -> list[PoolRow]:
        pools = read_pools(conn)
        used: dict[str, int] = defaultdict(int)
        for name, mcpu in conn.execute(
            select(Job.instance_name, func.sum(Job.cores_mcpu))
            .where(Job.state.in_((JobState.CREATING, JobState.RUNNING)))
            .group_by(Job.instance_name)
        ):
            used[name or ""] = int(mcpu)
        instances: dict[str, list[InstanceRow]] = defaultdict(list)
        rows = list(
            conn.execute(
                select(*Instance.__table__.c)
                .where(Instance.state.in_(SHOWN_STATES))  # and VMs not deleted yet
                .order_by(Instance.time_created)
            )
        )
        names = [row.name for row in rows]
        costs = costs_by(conn, "instance", instance_names=names) if names else {}
        rates = running_usd_per_hour_by_instance(conn, names) if names else {}
        for row in rows:
            cost, rate = costs.get(row.name, Decimal(0)), rates.get(row.name, Decimal(0))
            info = instance_info(row)
            instances[row.pool].append(InstanceRow(info, used.get(row.name, 0), cost, rate))
        return [PoolRow(pools[n], tuple(instances.get(n, ()))) for n in sorted(pools)]

    rows = await db.read(read)
    failures = await last_start_failures(db)
    return [replace(row, last_failure=failures.get(row.pool.name)) for row in rows]


async def get_batch_row(db: Database, batch_id: int) -> BatchRow:
    """One batch with its cost."""

    def read(conn: Connection) -> BatchRow:
        row = conn.execute(select(*BATCH_COLUMNS).where(Batch.id == batch_id)).first()
        if row is None:
            raise NotFoundError(f"there is no batch {batch_id}")
        cost = costs_by(conn, "batch", batch_id=batch_id).get(batch_id, Decimal(0))
        return BatchRow(batch_info(row), cost)

    return await db.read(read)


SCATTER_ATTRIBUTE = "labbatch.scatter"  # on a job expanded from a scatter node: the node's name


async def job_nodes(db: Database, batch_id: int) -> dict[int, str]:
    """Which DAG node each job of a batch stands for: its name, or its scatter node's name."""

    def read(conn: Connection) -> dict[int, str]:
        nodes = {}
        for job_id, name, spec in conn.execute(
            select(Job.job_id, Job.name, Job.spec).where(Job.batch_id == batch_id)
        ):
            attributes = (spec or {}).get("attributes") or {}
            nodes[job_id] = attributes.get(SCATTER_ATTRIBUTE) or name
        return nodes

    return await db.read(read)


async def job_states(db: Database, batch_id: int) -> dict[int, str]:
    """The state of every job of a batch (what a canvas colours its nodes by)."""

    def read(conn: Connection) -> dict[int, str]:
        rows = conn.execute(select(Job.job_id, Job.state).where(Job.batch_id == batch_id))
        return {job_id: state for job_id, state in rows}

    return await db.read(read)
