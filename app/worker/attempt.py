"""One attempt's state on the worker, and how its end becomes an Outcome."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from enum import StrEnum

from app.protocol import MAX_LOG_BYTES, JobRun, JobStart, Outcome
from app.worker.container import RUNTIME_FAILED_EXIT
from app.worker.spawn import ExitWatch


class KillReason(StrEnum):
    """Why the worker killed an attempt's process group."""

    CANCEL = "cancel"
    TIMEOUT = "timeout"
    SHUTDOWN = "shutdown"


@dataclass(slots=True, eq=False)
class Attempt:
    """An attempt that is queued (no ``start_time``) or running on this worker."""

    run: JobRun
    weight_mcpu: int
    start_time: float | None = None
    watch: ExitWatch | None = None
    timeout: asyncio.TimerHandle | None = None
    kill_reason: KillReason | None = None
    runtime: str | None = None  # docker/podman path for an image job

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.run.batch_id, self.run.job_id, self.run.attempt)

    def job_start(self) -> JobStart:
        """The JobStart frame entry of a running attempt."""
        assert self.start_time is not None
        run = self.run
        return JobStart(run.batch_id, run.job_id, run.attempt, self.start_time)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an exit status means for the driver."""

    outcome: Outcome
    exit_code: int | None
    error: str | None = None


SHUTDOWN_ERROR = "the worker shut down"


def judge_exit(attempt: Attempt, exit_code: int) -> Verdict:
    """Turn ``os.waitstatus_to_exitcode`` (negative = killed by signal) into a Verdict."""
    if exit_code < 0:
        exit_code = 128 - exit_code  # the shell convention, 128 + signal number
    reason = attempt.kill_reason
    if reason is KillReason.TIMEOUT:
        return Verdict(Outcome.ERROR, exit_code, f"timed out after {attempt.run.timeout_s:g}s")
    if reason is KillReason.CANCEL:
        return Verdict(Outcome.CANCELLED, exit_code, "cancelled")
    if reason is KillReason.SHUTDOWN:
        return Verdict(Outcome.CANCELLED, exit_code, SHUTDOWN_ERROR)
    if exit_code == 0:
        return Verdict(Outcome.SUCCESS, 0)
    if attempt.runtime and exit_code == RUNTIME_FAILED_EXIT:
        error = f"container runtime could not start the job (exit {exit_code}); see the log"
        return Verdict(Outcome.ERROR, exit_code, error)
    return Verdict(Outcome.FAILED, exit_code, _signal_error(exit_code))


def _signal_error(exit_code: int) -> str | None:
    # 128 + n is also what bash reports when a child of the job's shell died of signal n.
    signum = exit_code - 128
    if not 0 < signum < signal.NSIG:
        return None
    hint = " (out of memory?)" if signum == signal.SIGKILL else ""
    return f"killed by signal {signum}{hint}"


def read_log_tail(path: str) -> str:
    """The last MAX_LOG_BYTES of a log file; one stat for the usual empty log."""
    try:
        size_bytes = os.stat(path).st_size
    except FileNotFoundError:
        return ""
    if size_bytes == 0:
        return ""
    with open(path, "rb") as log:
        if size_bytes > MAX_LOG_BYTES:
            log.seek(size_bytes - MAX_LOG_BYTES)
        return log.read(MAX_LOG_BYTES).decode("utf-8", errors="replace")
