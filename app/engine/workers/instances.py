"""Worker instances as the driver sees them, and their rows in the database."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from app.clouds.base import TLS_PIN_KEY
from app.engine.batches.completion import Changes, JobEnd, chunks, end_attempts, end_jobs
from app.engine.workers.connection import WorkerConnection
from app.models.tables import (
    END_REASON_LENGTH,
    Attempt,
    Instance,
    InstanceState,
    Job,
    JobState,
    jobs_table,
)
from app.protocol import JobRun

_jobs = jobs_table

# Under a stream of short jobs a worker's cores sat idle for the driver's round trip between
# one job's end and the next one's start (store the result, place, send). While an instance's
# recent attempts all ran under SHORT_ATTEMPT_S, and none of what it holds was placed more than
# QUEUE_MAX_AGE_S ago, the driver may place up to QUEUE_FACTOR times its cores beyond them, and
# only once every instance of the pool is full; its worker queues them in order and starts each
# the moment a core frees. The bound on the harm: a queue of at most that much may wait behind
# jobs that turned out long, for as long as QUEUE_MAX_AGE_S let them pile up.
SHORT_ATTEMPT_S = 0.25
SHORT_STREAK = 8  # attempts in a row under SHORT_ATTEMPT_S before the instance may queue
QUEUE_FACTOR = 4
QUEUE_MAX_AGE_S = 1.0


@dataclass(slots=True)
class Assignment:
    """An attempt placed on an instance: what to send, whose it is, and on which connection
    it went (None: not sent yet, or to be sent again after a reconnect)."""

    run: JobRun
    user: str
    sent_on: int | None = None
    placed_at: float = field(default_factory=time.time)


@dataclass(eq=False)
class LiveInstance:
    """A pending or active worker: its capacity and the attempts it was given."""

    name: str
    pool: str
    cores_mcpu: int
    address: str | None
    location: str
    state: InstanceState = InstanceState.PENDING
    standing: bool = False
    tls_sha256: str | None = None  # the pinned certificate of a cloud worker (None: local)
    preemptible: bool = False  # a spot VM, which the cloud may take back at any time
    handle: dict[str, Any] = field(default_factory=dict)  # how the cloud finds it again
    creating: bool = False  # the cloud is making it (no address yet)
    draining: bool = False  # takes no new jobs; retires when empty
    conn: WorkerConnection | None = None
    last_heartbeat: float = 0.0
    # location -> size of the inputs its worker's cache holds (reported with heartbeats)
    cached_inputs: dict[str, int] = field(default_factory=dict)
    disconnected_since: float | None = None
    idle_since: float | None = None
    # a job-private instance exists for this one job, and retires once it has run it
    reserved_for: tuple[int, int] | None = None
    reserved_user: str | None = None
    served: bool = False
    assigned: dict[tuple[int, int, int], Assignment] = field(default_factory=dict)
    short_streak: int = 0  # attempts in a row that ran under SHORT_ATTEMPT_S

    @property
    def used_mcpu(self) -> int:
        return sum(a.run.cores_mcpu for a in self.assigned.values())

    @property
    def free_mcpu(self) -> int:
        return self.cores_mcpu - self.used_mcpu

    def queue_mcpu(self, now: float) -> int:
        """Cores the driver may place beyond this instance's own, for its worker to queue."""
        if self.short_streak < SHORT_STREAK:
            return 0
        oldest = next(iter(self.assigned.values()), None)  # dicts keep placing order
        if oldest is not None and now - oldest.placed_at > QUEUE_MAX_AGE_S:
            return 0
        return QUEUE_FACTOR * self.cores_mcpu

    def ran(self, start_time: float | None, end_time: float) -> None:
        """An attempt of this instance ended: keep the streak of short ones."""
        short = start_time is not None and end_time - start_time < SHORT_ATTEMPT_S
        self.short_streak = self.short_streak + 1 if short else 0

    @property
    def live(self) -> bool:
        return self.state in (InstanceState.PENDING, InstanceState.ACTIVE)

    @property
    def healthy(self) -> bool:
        """Active, connected and taking jobs."""
        return (
            self.state == InstanceState.ACTIVE
            and not self.draining
            and self.conn is not None
            and not self.conn.closed
        )

    def assign(self, assignment: Assignment) -> None:
        self.assigned[assignment.run.ref.key()] = assignment
        self.idle_since = None
        self.served = True

    def release(self, key: tuple[int, int, int], now: float) -> Assignment | None:
        assignment = self.assigned.pop(key, None)
        if not self.assigned and self.idle_since is None:
            self.idle_since = now
        return assignment


def insert_instance(
    conn: Connection, *, name: str, pool: str, cores_mcpu: int, standing: bool, now: float
) -> None:
    conn.execute(
        insert(Instance).values(
            name=name,
            pool=pool,
            state=str(InstanceState.PENDING),
            cores_mcpu=cores_mcpu,
            standing=standing,
            time_created=now,
            handle={},
        )
    )


def record_address(
    conn: Connection,
    name: str,
    *,
    address: str,
    location: str,
    handle: dict[str, Any],
) -> None:
    """The cloud made the VM: where to dial it. It stays pending (booting) until it answers."""
    conn.execute(
        update(Instance)
        .where(Instance.name == name, Instance.state == str(InstanceState.PENDING))
        .values(address=address, location=location, handle=handle)
    )


def activate_instance(conn: Connection, name: str, *, now: float) -> None:
    """The worker answered the driver: it is active."""
    conn.execute(
        update(Instance)
        .where(Instance.name == name, Instance.state == str(InstanceState.PENDING))
        .values(state=str(InstanceState.ACTIVE), time_activated=now, last_heartbeat=now)
    )


def set_instance_state(
    conn: Connection, name: str, state: InstanceState, *, reason: str | None, now: float
) -> None:
    values: dict[str, Any] = {"state": str(state)}
    if reason is not None:
        values["reason"] = reason
    if state in (InstanceState.INACTIVE, InstanceState.DELETING, InstanceState.DELETED):
        values["time_deactivated"] = now
    conn.execute(
        update(Instance)
        .where(Instance.name == name, Instance.time_deactivated.is_(None))
        .values(**values)
    )
    if state == InstanceState.DELETED:
        conn.execute(
            update(Instance)
            .where(Instance.name == name)
            .values(state=str(state), delete_error=None)
        )


def set_delete_error(conn: Connection, name: str, error: str) -> None:
    """Why a deleting instance's VM is not deleted yet (shown by `pool show`)."""
    conn.execute(
        update(Instance)
        .where(Instance.name == name, Instance.state == str(InstanceState.DELETING))
        .values(delete_error=error)
    )


def deleting_instances(conn: Connection, pools: Sequence[str]) -> list[Any]:
    """Rows of the pools' instances whose VM an earlier driver did not finish deleting."""
    rows = conn.execute(
        select(Instance.name, Instance.pool, Instance.handle).where(
            Instance.pool.in_(list(pools)), Instance.state == str(InstanceState.DELETING)
        )
    )
    return list(rows)


def tls_pin(handle: dict[str, Any] | None) -> str | None:
    """The certificate pin a cloud put in an instance's handle (local workers have none)."""
    pin = (handle or {}).get(TLS_PIN_KEY)
    return pin if isinstance(pin, str) and pin else None


def live_instances(conn: Connection, pools: Sequence[str]) -> list[Any]:
    """Rows of the pools' pending and active instances."""
    rows = conn.execute(
        select(*Instance.__table__.c).where(
            Instance.pool.in_(list(pools)),
            Instance.state.in_([InstanceState.PENDING, InstanceState.ACTIVE]),
        )
    )
    return list(rows)


def open_attempts(conn: Connection, instance_name: str) -> list[tuple[int, int, int]]:
    rows = conn.execute(
        select(Attempt.batch_id, Attempt.job_id, Attempt.attempt).where(
            Attempt.instance_name == instance_name, Attempt.end_time.is_(None)
        )
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def requeue_attempts(
    conn: Connection,
    refs: Sequence[tuple[int, int, int]],
    *,
    reason: str,
    now: float,
    charge: bool = True,
) -> Changes:
    """End attempts that did not finish (worker lost, driver stopped); their jobs run again.

    A job that has used all of its attempts ends Error instead. With ``charge=False`` the
    attempt does not count toward ``n_max_attempts`` (the driver stopped on purpose).
    """
    # the column is short: the job's error keeps the whole reason
    end_attempts(conn, refs, reason=reason[:END_REASON_LENGTH], end_time=now)
    by_batch: dict[int, dict[int, int]] = defaultdict(dict)
    for b, j, a in refs:
        by_batch[b][j] = a
    back: list[dict[str, Any]] = []
    errors: list[JobEnd] = []
    for batch_id, attempts in by_batch.items():
        for part in chunks(list(attempts)):
            rows = conn.execute(
                select(Job.job_id, Job.last_attempt, Job.n_attempts, Job.n_max_attempts).where(
                    Job.batch_id == batch_id,
                    Job.job_id.in_(part),
                    Job.state == JobState.RUNNING,
                )
            )
            for job_id, last, n_attempts, n_max in rows:
                if last != attempts[job_id]:
                    continue  # a newer attempt is current
                if charge and n_attempts >= n_max:
                    errors.append(
                        JobEnd(
                            batch_id,
                            job_id,
                            JobState.ERROR,
                            now,
                            error=f"{reason}; gave up after {n_attempts} attempts",
                        )
                    )
                else:
                    back.append({"b_b": batch_id, "b_j": job_id, "b_n": 0 if charge else 1})
    if back:
        conn.execute(
            update(_jobs)
            .where(_jobs.c.batch_id == bindparam("b_b"), _jobs.c.job_id == bindparam("b_j"))
            .values(
                state=str(JobState.READY),
                time_ready=now,
                instance_name=None,
                n_attempts=_jobs.c.n_attempts - bindparam("b_n"),
            ),
            back,
        )
    if back and reason.startswith("preempted"):
        count_preemptions(conn, [(b["b_b"], b["b_j"]) for b in back])
    changes = end_jobs(conn, errors, now)
    changes.n_ready += len(back)
    changes.n_jobs_changed += len(back)
    changes.batches |= set(by_batch)
    return changes


def count_preemptions(conn: Connection, jobs: Sequence[tuple[int, int]]) -> None:
    """Count a preemption; after the policy's number of them, run on standard workers."""
    for batch_id, job_id in jobs:
        where = (Job.batch_id == batch_id, Job.job_id == job_id)
        conn.execute(update(Job).where(*where).values(n_preemptions=Job.n_preemptions + 1))
        spec, n = conn.execute(select(Job.spec, Job.n_preemptions).where(*where)).one()
        after = ((spec or {}).get("retry") or {}).get("fallback_after_preemptions")
        if after is not None and n >= after:
            conn.execute(update(Job).where(*where).values(preemptible=False))
