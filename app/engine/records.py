"""Plain values the engine returns (never ORM objects)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A batch as a user sees it."""

    id: int
    name: str
    user: str
    billing_project: str
    state: str
    complete: bool
    cancelled: bool
    n_jobs: int
    n_completed: int
    n_succeeded: int
    n_failed: int
    n_cancelled: int
    time_created: float
    time_completed: float | None
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        end = self.time_completed if self.time_completed is not None else time.time()
        return max(0.0, end - self.time_created)


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job as a user sees it."""

    batch_id: int
    job_id: int
    name: str
    state: str
    exit_code: int | None
    error: str | None
    n_attempts: int
    instance_name: str | None
    cores_mcpu: int
    always_run: bool
    time_started: float | None
    time_ended: float | None

    @property
    def duration_s(self) -> float | None:
        if self.time_started is None:
            return None
        end = self.time_ended if self.time_ended is not None else time.time()
        return max(0.0, end - self.time_started)


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    """One run of a job on one instance."""

    batch_id: int
    job_id: int
    attempt: int
    instance_name: str
    start_time: float | None
    end_time: float | None
    end_reason: str | None
    staging: dict[str, float] | None = None  # transfer figures of an attempt with files


@dataclass(frozen=True, slots=True)
class JobDetail:
    """A job with its spec and attempts."""

    job: JobInfo
    spec: dict[str, Any]
    depends_on: list[str]
    attempts: list[AttemptInfo]
    files: str | None = None  # what the last attempt with files moved, in one line
