"""SQLAlchemy tables: the durable state of LabBatch (see DESIGN.md, "Data model").

Times are float seconds since the epoch. Primary keys of jobs are (batch_id, job_id) with
job ids reserved per update, so a whole update is inserted in bulk without RETURNING.

The tables are SQLAlchemy Core tables; each class names one and reads its columns as
attributes (``Job.state`` is ``Job.__table__.c.state``), and stands for the table in a statement
(``update(Job)``). The engine writes Core statements and reads rows, never ORM objects; ORM
classes cost every command ~45 ms to map at import, more to configure the mappers on the first
statement, and an ORM pass over each statement compiled.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
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


metadata = MetaData(naming_convention=NAMING)
END_REASON_LENGTH = 40  # attempts.end_reason: a short reason; the job's error keeps it whole


class _TableMeta(type):
    """Reads a table's columns as attributes of its class and lets the class stand for it."""

    __table__: Table

    def __getattr__(cls, name: str) -> Column[Any]:
        if name.startswith("__"):  # Base itself has no table; probes of dunders are no column
            raise AttributeError(name)
        try:
            return cast("Column[Any]", cls.__table__.c[name])
        except KeyError:
            raise AttributeError(f"table {cls.__name__} has no column {name!r}") from None

    def __clause_element__(cls) -> Table:
        return cls.__table__


class Base(metaclass=_TableMeta):
    """A table by name: ``Job.state`` is a column, ``select(Job)`` selects every column."""

    metadata: ClassVar[MetaData] = metadata


class BillingProject(Base):
    __table__ = Table(
        "billing_projects",
        metadata,
        Column("name", String(100), primary_key=True),
        Column("status", String(20), default="open", nullable=False),
        Column("limit_usd", Numeric(18, 6), nullable=True),
        Column("time_created", Float, nullable=False),
    )


class BillingProjectUser(Base):
    __table__ = Table(
        "billing_project_users",
        metadata,
        Column("billing_project", ForeignKey("billing_projects.name"), primary_key=True),
        Column("user", String(100), primary_key=True),
    )


class Batch(Base):
    __table__ = Table(
        "batches",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("user", String(100), nullable=False),
        Column("billing_project", ForeignKey("billing_projects.name"), nullable=False),
        Column("name", String(200), nullable=False),
        Column("attributes", JSON, default=dict, nullable=False),
        Column("source", Text, nullable=True),
        Column("state", String(20), default=BatchState.RUNNING, nullable=False),
        Column("complete", Boolean, default=False, nullable=False),
        Column("cancelled", Boolean, default=False, nullable=False),
        Column("cancel_after_n_failures", Integer, nullable=True),
        Column("n_jobs", Integer, default=0, nullable=False),
        Column("n_completed", Integer, default=0, nullable=False),
        Column("n_succeeded", Integer, default=0, nullable=False),
        Column("n_failed", Integer, default=0, nullable=False),
        Column("n_cancelled", Integer, default=0, nullable=False),
        Column("n_updates", Integer, default=0, nullable=False),
        Column("time_created", Float, nullable=False),
        Column("time_completed", Float, nullable=True),
        # deleted from the user's lists; its jobs and attempts stay so that spend stays right
        Column("deleted", Boolean, default=False, server_default=false(), nullable=False),
        Index("ix_batches_user_id", "user", "id"),
    )


class Update(Base):
    """A block of job ids appended to a batch, committed atomically."""

    __table__ = Table(
        "updates",
        metadata,
        Column("batch_id", ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        Column("update_id", Integer, primary_key=True),
        Column("start_job_id", Integer, nullable=False),
        Column("n_jobs", Integer, nullable=False),
        Column("committed", Boolean, default=False, nullable=False),
        Column("time_created", Float, nullable=False),
        Column("time_committed", Float, nullable=True),
    )


class Job(Base):
    __table__ = Table(
        "jobs",
        metadata,
        Column("batch_id", ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        Column("job_id", Integer, primary_key=True),
        Column("update_id", Integer, nullable=False),
        Column("name", String(100), nullable=False),
        Column("user", String(100), nullable=False),
        Column("state", String(16), nullable=False),
        Column("n_pending_parents", Integer, default=0, nullable=False),
        Column("cancelled", Boolean, default=False, nullable=False),
        Column("always_run", Boolean, default=False, nullable=False),
        Column("n_max_attempts", Integer, default=3, nullable=False),
        # attempts that count toward n_max_attempts; last_attempt numbers them
        Column("n_attempts", Integer, default=0, nullable=False),
        Column("last_attempt", Integer, default=0, nullable=False),
        Column("n_preemptions", Integer, default=0, server_default="0", nullable=False),
        Column("cores_mcpu", Integer, nullable=False),
        Column("memory_bytes", BigInteger, default=0, nullable=False),
        Column("storage_bytes", BigInteger, default=0, nullable=False),
        Column("pool", String(100), nullable=True),
        Column("preemptible", Boolean, default=True, nullable=False),
        Column("regions", JSON, nullable=True),
        Column("machine_type", String(100), nullable=True),
        # command, env, image, timeout_s, attributes, memory_class
        Column("spec", JSON, nullable=False),
        Column("instance_name", String(100), nullable=True),
        Column("exit_code", Integer, nullable=True),
        Column("error", Text, nullable=True),
        Column("time_ready", Float, nullable=True),
        Column("time_started", Float, nullable=True),
        Column("time_ended", Float, nullable=True),
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
    __table__ = Table(
        "job_parents",
        metadata,
        Column("batch_id", ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        Column("job_id", Integer, primary_key=True),
        Column("parent_id", Integer, primary_key=True),
        Index("ix_job_parents_parent", "batch_id", "parent_id"),
    )


class Attempt(Base):
    __table__ = Table(
        "attempts",
        metadata,
        Column("batch_id", ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        Column("job_id", Integer, primary_key=True),
        Column("attempt", Integer, primary_key=True),
        Column("instance_name", String(100), nullable=False),
        Column("time_scheduled", Float, nullable=False),
        Column("start_time", Float, nullable=True),
        Column("end_time", Float, nullable=True),
        Column("end_reason", String(END_REASON_LENGTH), nullable=True),
        # transfer figures of an attempt with files (JobResult.staging)
        Column("staging", JSON, nullable=True),
        Index(
            "ix_attempts_open",
            "instance_name",
            sqlite_where=text("end_time IS NULL"),
        ),
    )


class JobLog(Base):
    """The log of a finished attempt (its tail, as the worker sent it)."""

    __table__ = Table(
        "job_logs",
        metadata,
        Column("batch_id", ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        Column("job_id", Integer, primary_key=True),
        Column("attempt", Integer, primary_key=True),
        Column("text", Text, nullable=False),
    )


class Pool(Base):
    """A pool of workers and its autoscaler configuration."""

    __table__ = Table(
        "pools",
        metadata,
        Column("name", String(100), primary_key=True),
        Column("cloud", String(20), nullable=False),
        Column("worker_cores_mcpu", Integer, nullable=False),
        Column("machine_type", String(100), nullable=True),
        Column("preemptible", Boolean, default=False, nullable=False),
        Column("min_instances", Integer, default=0, nullable=False),
        Column("max_instances", Integer, default=1, nullable=False),
        Column("max_live_instances", Integer, default=1, nullable=False),
        Column("max_new_instances_per_loop", Integer, default=10, nullable=False),
        Column("standing_worker_cores_mcpu", Integer, default=0, nullable=False),
        Column("idle_timeout_s", Float, default=300.0, nullable=False),
        Column("boot_time_s", Float, default=0.0, nullable=False),
        # how long a new worker may take to answer before its VM is deleted as failed
        Column("boot_deadline_s", Float, default=600.0, server_default="600", nullable=False),
        Column("regions", JSON, nullable=True),
        Column("price_per_core_hour_usd", Numeric(18, 8), nullable=True),
        # cloud-specific settings (project, zones, image …); never credentials
        Column("config", JSON, default=dict, nullable=False),
        # files between jobs: where outputs are kept (None: the data dir) and for how long
        Column("scratch", Text, nullable=True),
        Column("retention_s", Float, default=259200.0, server_default="259200", nullable=False),
        # a one-off "scale to N now" request, consumed by the driver
        Column("scale_target", Integer, nullable=True),
    )


class Instance(Base):
    __table__ = Table(
        "instances",
        metadata,
        Column("name", String(100), primary_key=True),
        Column("pool", ForeignKey("pools.name"), nullable=False),
        Column("state", String(16), nullable=False),
        Column("cores_mcpu", Integer, nullable=False),
        Column("address", String(200), nullable=True),
        Column("location", String(100), nullable=True),
        Column("machine_type", String(100), nullable=True),
        Column("preemptible", Boolean, default=False, nullable=False),
        # cloud handle: the pid and work dir of a local worker, the VM id of a cloud one
        Column("handle", JSON, default=dict, nullable=False),
        Column("time_created", Float, nullable=False),
        Column("time_activated", Float, nullable=True),
        Column("time_deactivated", Float, nullable=True),
        Column("last_heartbeat", Float, nullable=True),
        Column("reason", Text, nullable=True),
        # why the cloud has not deleted it yet (a deleting instance whose delete failed)
        Column("delete_error", Text, nullable=True),
        # standing instances keep the pool's minimum and do not retire when idle
        Column("standing", Boolean, default=False, server_default=false(), nullable=False),
        Index("ix_instances_pool_state", "pool", "state"),
    )


class Resource(Base):
    """A billed resource's price; a price change adds a version, old attempts keep theirs."""

    __table__ = Table(
        "resources",
        metadata,
        Column("name", String(200), primary_key=True),
        Column("version", Integer, primary_key=True),
        Column("usd_per_unit_hour", Numeric(24, 12), nullable=False),
        Column("time_created", Float, nullable=False),
    )


class CloudPrice(Base):
    """A list price read from a cloud's catalogue; it overrides the price file's figure."""

    __table__ = Table(
        "cloud_prices",
        metadata,
        Column("resource", String(200), primary_key=True),
        Column("cloud", String(20), nullable=False),
        Column("usd_per_unit_hour", Numeric(24, 12), nullable=False),
        Column("source", String(500), nullable=False),
        Column("time_fetched", Float, nullable=False),
    )


class AttemptResource(Base):
    """How much of a resource (per hour) one attempt uses, at which price version."""

    __table__ = Table(
        "attempt_resources",
        metadata,
        Column("batch_id", ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True),
        Column("job_id", Integer, primary_key=True),
        Column("attempt", Integer, primary_key=True),
        Column("resource", String(200), primary_key=True),
        Column("version", Integer, nullable=False),
        Column("quantity", Numeric(24, 12), nullable=False),
    )


class DriverLease(Base):
    """The single row that says which process runs the driver loops."""

    __table__ = Table(
        "driver_lease",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("holder", String(200), nullable=True),
        Column("expires_at", Float, default=0.0, nullable=False),
        Column("acquired_at", Float, nullable=True),
    )


class ChangeMarker(Base):
    """Bumped by every front end write the driver must notice (submit, cancel)."""

    __table__ = Table(
        "change_marker",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("seq", Integer, default=0, nullable=False),
    )


class MetricSample(Base):
    """One dashboard sample (cores, shares, jobs, spend), kept a day for the time windows."""

    __table__ = Table(
        "metric_samples",
        metadata,
        Column("time", Float, primary_key=True),
        Column("data", JSON, nullable=False),
    )


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
