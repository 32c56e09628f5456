"""Retries a lab expects beyond Hail Batch: on failure, after running out of memory (with more
memory), and a fallback to standard workers after preemptions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from app.models.tables import Job, JobState, jobs_table
from app.protocol import JobResult, Outcome

OOM_EXIT_CODE = 137  # 128 + SIGKILL: what the kernel's OOM killer leaves


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """A failed attempt that will run again, and with how much memory."""

    result: JobResult
    memory_bytes: int
    why: str


def looks_out_of_memory(result: JobResult) -> bool:
    return result.exit_code == OOM_EXIT_CODE or "out of memory" in (result.error or "")


def decide(
    result: JobResult, policy: dict[str, Any] | None, *, attempts_so_far: int, memory_bytes: int
) -> RetryDecision | None:
    """Whether a failed attempt is retried under the job's retry policy (a pure function)."""
    if not policy or result.outcome != Outcome.FAILED:
        return None
    if attempts_so_far > int(policy.get("max", 0)):
        return None  # the first run plus `max` retries are spent
    on = set(policy.get("on", ()))
    if "oom" in on and looks_out_of_memory(result):
        factor = float(policy.get("memory_factor", 1.0))
        bigger = math.ceil(memory_bytes * factor) if memory_bytes else 0
        return RetryDecision(result, bigger, f"out of memory; retry {attempts_so_far}")
    if "failure" in on:
        return RetryDecision(
            result, memory_bytes, f"exit {result.exit_code}; retry {attempts_so_far}"
        )
    return None


_POLICIES = select(Job.batch_id, Job.job_id, Job.spec, Job.memory_bytes, Job.last_attempt)
_RETRY = (
    update(jobs_table)
    .where(jobs_table.c.batch_id == bindparam("b_b"), jobs_table.c.job_id == bindparam("b_j"))
    .values(
        state=str(JobState.READY),
        time_ready=bindparam("b_now"),
        instance_name=None,
        memory_bytes=bindparam("b_mem"),
        # a retry is the job's own doing, not a lost worker: it does not use n_max_attempts
        n_attempts=jobs_table.c.n_attempts - 1,
    )
)


def split_retries(conn: Connection, failed: Sequence[JobResult], now: float) -> list[RetryDecision]:
    """Put the failed attempts that their policy retries back to Ready; return them."""
    decisions: list[RetryDecision] = []
    for result in failed:
        row = conn.execute(
            _POLICIES.where(Job.batch_id == result.batch_id, Job.job_id == result.job_id)
        ).one()
        decision = decide(
            result,
            (row.spec or {}).get("retry"),
            attempts_so_far=row.last_attempt,
            memory_bytes=row.memory_bytes or 0,
        )
        if decision is not None:
            decisions.append(decision)
    if decisions:
        conn.execute(
            _RETRY,
            [
                {
                    "b_b": d.result.batch_id,
                    "b_j": d.result.job_id,
                    "b_now": now,
                    "b_mem": d.memory_bytes,
                }
                for d in decisions
            ],
        )
    return decisions
