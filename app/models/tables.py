"""SQLAlchemy tables: the durable state of LabBatch (see DESIGN.md, "Data model").

Times are float seconds since the epoch. Primary keys of jobs are (batch_id, job_id) with
job ids reserved per update, so a whole update is inserted in bulk without RETURNING.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class JobState(StrEnum):
    """Job states, as in Hail Batch."""

    PENDING = "Pending"
    READY = "Ready"
    CREATING = "Creating"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"
    ERROR = "Error"
    CANCELLED = "Cancelled"

    @property
    def is_complete(self) -> bool:
        return self in COMPLETE_STATES


COMPLETE_STATES = frozenset({JobState.SUCCESS, JobState.FAILED, JobState.ERROR, JobState.CANCELLED})


class BatchState(StrEnum):
    """What a user sees of a batch."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"


class InstanceState(StrEnum):
    """Worker instance lifecycle: pending (the cloud makes it, it boots) -> active ->
    deleting (retired; its VM is deleted until the cloud confirms it gone) -> deleted.
    ``inactive`` is what earlier versions wrote for deleting."""

    PENDING = "pending"
    ACTIVE = "active"
    INACTIVE = "inactive"
    DELETING = "deleting"
    DELETED = "deleted"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class BillingProject(Base):
    __tablename__ = "billing_projects"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    limit_usd: Mapped[float | None] = mapped_column(Numeric(18, 6), nullable=True)
    time_created: Mapped[float] = mapped_column(Float)


class BillingProjectUser(Base):
    __tablename__ = "billing_project_users"

    billing_project: Mapped[str] = mapped_column(
        ForeignKey("billing_projects.name"), primary_key=True
    )
    user: Mapped[str] = mapped_column(String(100), primary_key=True)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(100))
    billing_project: Mapped[str] = mapped_column(ForeignKey("billing_projects.name"))
    name: Mapped[str] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(20), default=BatchState.RUNNING)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_after_n_failures: Mapped[int | None] = mapped_column(Integer, nullable=True)
    n_jobs: Mapped[int] = mapped_column(Integer, default=0)
    n_completed: Mapped[int] = mapped_column(Integer, default=0)
    n_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    n_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    n_updates: Mapped[int] = mapped_column(Integer, default=0)
    time_created: Mapped[float] = mapped_column(Float)
    time_completed: Mapped[float | None] = mapped_column(Float, nullable=True)
    # deleted from the user's lists; its jobs and attempts stay so that spend stays right
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (Index("ix_batches_user_id", "user", "id"),)


class Update(Base):
    """A block of job ids appended to a batch, committed atomically."""

    __tablename__ = "updates"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    update_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_job_id: Mapped[int] = mapped_column(Integer)
    n_jobs: Mapped[int] = mapped_column(Integer)
    committed: Mapped[bool] = mapped_column(Boolean, default=False)
    time_created: Mapped[float] = mapped_column(Float)
    time_committed: Mapped[float | None] = mapped_column(Float, nullable=True)


class Job(Base):
    __tablename__ = "jobs"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    update_id: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    user: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16))
    n_pending_parents: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    always_run: Mapped[bool] = mapped_column(Boolean, default=False)
    n_max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    # attempts that count toward n_max_attempts; last_attempt numbers them
    n_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt: Mapped[int] = mapped_column(Integer, default=0)
    n_preemptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cores_mcpu: Mapped[int] = mapped_column(Integer)
    memory_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    pool: Mapped[str | None] = mapped_column(String(100), nullable=True)
    preemptible: Mapped[bool] = mapped_column(Boolean, default=True)
    regions: Mapped[list[Any] | None] = mapped_column(nullable=True)
    machine_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # command, env, image, timeout_s, attributes, memory_class
    spec: Mapped[dict[str, Any]] = mapped_column()
    instance_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    time_ready: Mapped[float | None] = mapped_column(Float, nullable=True)
    time_started: Mapped[float | None] = mapped_column(Float, nullable=True)
    time_ended: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_jobs_batch_name", "batch_id", "name", unique=True),
        Index("ix_jobs_batch_state", "batch_id", "state"),
        # Partial indexes say their WHERE once, for SQLite; PostgreSQL gets the same clause
        # when the schema is created there (add_postgresql_where).
        # The scheduler's queues: Ready jobs per pool and user, oldest batch first; covering
        # cores so the per-user demand is an index-only scan.
        Index(
            "ix_jobs_ready_queue",
            "pool",
            "user",
            "batch_id",
            "job_id",
            "cores_mcpu",
            sqlite_where=text("state = 'Ready'"),
        ),
        # what runs where and for whom: cores in use per instance and per user
        Index(
            "ix_jobs_running",
            "instance_name",
            "user",
            "cores_mcpu",
            sqlite_where=text("state IN ('Creating', 'Running')"),
        ),
        Index(
            "ix_jobs_ready_always",
            "pool",
            "user",
            "batch_id",
            "job_id",
            sqlite_where=text("state = 'Ready' AND always_run"),
        ),
    )


class JobParent(Base):
    __tablename__ = "job_parents"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int] = mapped_column(Integer, primary_key=True)

    __table_args__ = (Index("ix_job_parents_parent", "batch_id", "parent_id"),)


class Attempt(Base):
    __tablename__ = "attempts"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_name: Mapped[str] = mapped_column(String(100))
    time_scheduled: Mapped[float] = mapped_column(Float)
    start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # transfer figures of an attempt with files (JobResult.staging)
    staging: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)

    __table_args__ = (
        Index(
            "ix_attempts_open",
            "instance_name",
            sqlite_where=text("end_time IS NULL"),
        ),
    )


class JobLog(Base):
    """The log of a finished attempt (its tail, as the worker sent it)."""

    __tablename__ = "job_logs"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)


class Pool(Base):
    """A pool of workers and its autoscaler configuration."""

    __tablename__ = "pools"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    cloud: Mapped[str] = mapped_column(String(20))
    worker_cores_mcpu: Mapped[int] = mapped_column(Integer)
    machine_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    preemptible: Mapped[bool] = mapped_column(Boolean, default=False)
    min_instances: Mapped[int] = mapped_column(Integer, default=0)
    max_instances: Mapped[int] = mapped_column(Integer, default=1)
    max_live_instances: Mapped[int] = mapped_column(Integer, default=1)
    max_new_instances_per_loop: Mapped[int] = mapped_column(Integer, default=10)
    standing_worker_cores_mcpu: Mapped[int] = mapped_column(Integer, default=0)
    idle_timeout_s: Mapped[float] = mapped_column(Float, default=300.0)
    boot_time_s: Mapped[float] = mapped_column(Float, default=0.0)
    # how long a new worker may take to answer before its VM is deleted as failed
    boot_deadline_s: Mapped[float] = mapped_column(Float, default=600.0, server_default="600")
    regions: Mapped[list[Any] | None] = mapped_column(nullable=True)
    price_per_core_hour_usd: Mapped[float | None] = mapped_column(Numeric(18, 8), nullable=True)
    # cloud-specific settings (project, zones, image …); never credentials
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # files between jobs: where outputs are kept (None: the data dir) and for how long
    scratch: Mapped[str | None] = mapped_column(Text, nullable=True)
    retention_s: Mapped[float] = mapped_column(Float, default=259200.0, server_default="259200")
    # a one-off "scale to N now" request, consumed by the driver
    scale_target: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Instance(Base):
    __tablename__ = "instances"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    pool: Mapped[str] = mapped_column(ForeignKey("pools.name"))
    state: Mapped[str] = mapped_column(String(16))
    cores_mcpu: Mapped[int] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(String(200), nullable=True)
    location: Mapped[str | None] = mapped_column(String(100), nullable=True)
    machine_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    preemptible: Mapped[bool] = mapped_column(Boolean, default=False)
    # cloud handle: the pid and work dir of a local worker, the VM id of a cloud one
    handle: Mapped[dict[str, Any]] = mapped_column(default=dict)
    time_created: Mapped[float] = mapped_column(Float)
    time_activated: Mapped[float | None] = mapped_column(Float, nullable=True)
    time_deactivated: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # why the cloud has not deleted it yet (a deleting instance whose delete failed)
    delete_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # standing instances keep the pool's minimum and do not retire when idle
    standing: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (Index("ix_instances_pool_state", "pool", "state"),)


class Resource(Base):
    """A billed resource's price; a price change adds a version, old attempts keep theirs."""

    __tablename__ = "resources"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    usd_per_unit_hour: Mapped[Decimal] = mapped_column(Numeric(24, 12))
    time_created: Mapped[float] = mapped_column(Float)


class CloudPrice(Base):
    """A list price read from a cloud's catalogue; it overrides the price file's figure."""

    __tablename__ = "cloud_prices"

    resource: Mapped[str] = mapped_column(String(200), primary_key=True)
    cloud: Mapped[str] = mapped_column(String(20))
    usd_per_unit_hour: Mapped[Decimal] = mapped_column(Numeric(24, 12))
    source: Mapped[str] = mapped_column(String(500))
    time_fetched: Mapped[float] = mapped_column(Float)


class AttemptResource(Base):
    """How much of a resource (per hour) one attempt uses, at which price version."""

    __tablename__ = "attempt_resources"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True
    )
    job_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[Decimal] = mapped_column(Numeric(24, 12))


class DriverLease(Base):
    """The single row that says which process runs the driver loops."""

    __tablename__ = "driver_lease"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200), nullable=True)
    expires_at: Mapped[float] = mapped_column(Float, default=0.0)
    acquired_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class ChangeMarker(Base):
    """Bumped by every front end write the driver must notice (submit, cancel)."""

    __tablename__ = "change_marker"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)


class MetricSample(Base):
    """One dashboard sample (cores, shares, jobs, spend), kept a day for the time windows."""

    __tablename__ = "metric_samples"

    time: Mapped[float] = mapped_column(Float, primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column()


# Core tables, typed as such for statements built once at import time.
jobs_table = cast(Table, Job.__table__)
batches_table = cast(Table, Batch.__table__)
attempts_table = cast(Table, Attempt.__table__)
job_parents_table = cast(Table, JobParent.__table__)
attempt_resources_table = cast(Table, AttemptResource.__table__)

# what the scheduler loads of a job it is about to run
RUN_COLUMNS = (
    Job.batch_id,
    Job.job_id,
    Job.name,
    Job.cores_mcpu,
    Job.memory_bytes,
    Job.spec,
    Job.last_attempt,
)


def add_postgresql_where(metadata: MetaData) -> None:
    """Give PostgreSQL the partial indexes' WHERE clauses, which the tables state for SQLite.

    Called before the tables are created on PostgreSQL. Stating ``postgresql_where`` in the
    tables instead would load SQLAlchemy's whole PostgreSQL dialect when this module is
    imported, on SQLite too: 15-35 ms of every command that opens a database.
    """
    for table in metadata.tables.values():
        for index in table.indexes:
            where = index.dialect_options["sqlite"]["where"]
            if where is not None:
                index.dialect_options["postgresql"]["where"] = where
