"""Run some failed jobs of a finished batch again: as they were, with more memory, or on
non-preemptible workers (what the canvas offers on a failed node)."""

from __future__ import annotations

import math
import time
from collections.abc import Collection

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from app.engine.frontend import locked_batch, reset_jobs, with_cancelled_descendants
from app.engine.marker import bump_marker
from app.errors import UserError
from app.models.db import Database
from app.models.tables import Batch, Job, JobState, jobs_table
from app.models.units import MEMORY_GIB_PER_CORE

GIB_BYTES = 1024**3

FAILED = (JobState.FAILED, JobState.ERROR)

_SET_RESOURCES = (
    update(jobs_table)
    .where(jobs_table.c.batch_id == bindparam("b_b"), jobs_table.c.job_id == bindparam("b_j"))
    .values(memory_bytes=bindparam("b_mem"), preemptible=bindparam("b_pre"))
)


def more_memory_bytes(
    memory_bytes: int, memory_class: str | None, cores_mcpu: int, factor: float
) -> int:
    """``factor`` times a job's memory; a job sized by class gets its class's memory per core."""
    if not memory_bytes:
        per_core_gib = MEMORY_GIB_PER_CORE.get(memory_class or "standard", 4)
        memory_bytes = per_core_gib * GIB_BYTES * cores_mcpu // 1000
    return math.ceil(memory_bytes * factor)


async def retry_jobs(
    db: Database,
    batch_id: int,
    job_ids: Collection[int],
    *,
    user: str,
    memory_factor: float = 1.0,
    non_preemptible: bool = False,
) -> int:
    """Run these jobs again if they failed, with the jobs their failure cancelled.

    ``memory_factor`` scales their memory; ``non_preemptible`` keeps them off spot workers.
    Returns how many jobs will run again (0 when none of them failed).
    """
    if memory_factor < 1:
        raise UserError(f"a retry can only give more memory, not {memory_factor:g} times as much")
    now = time.time()

    def store(conn: Connection) -> int:
        batch = locked_batch(conn, batch_id)
        if batch.user != user:
            raise UserError(f"batch {batch_id} belongs to {batch.user}; only they can retry it")
        complete = conn.execute(select(Batch.complete).where(Batch.id == batch_id)).scalar_one()
        if not complete:
            raise UserError(
                f"batch {batch_id} is still running; retry its jobs once it has finished"
            )
        rows = conn.execute(
            select(
                Job.job_id, Job.state, Job.memory_bytes, Job.cores_mcpu, Job.preemptible, Job.spec
            ).where(Job.batch_id == batch_id)
        ).all()
        states = {row.job_id: row.state for row in rows}
        chosen = {j for j in job_ids if states.get(j) in FAILED}
        if not chosen:
            return 0
        rerun = with_cancelled_descendants(conn, batch_id, chosen, states)
        if memory_factor != 1 or non_preemptible:
            by_id = {row.job_id: row for row in rows}
            conn.execute(
                _SET_RESOURCES,
                [
                    {
                        "b_b": batch_id,
                        "b_j": j,
                        "b_mem": more_memory_bytes(
                            by_id[j].memory_bytes,
                            (by_id[j].spec or {}).get("memory_class"),
                            by_id[j].cores_mcpu,
                            memory_factor,
                        )
                        if memory_factor != 1
                        else by_id[j].memory_bytes,
                        "b_pre": False if non_preemptible else by_id[j].preemptible,
                    }
                    for j in sorted(chosen)
                ],
            )
        reset_jobs(conn, batch_id, rerun, states, now)
        bump_marker(conn)
        return len(rerun)

    return await db.run(store)
