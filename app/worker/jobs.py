"""The job table: queued, running and finished attempts, and the core budget between them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from app.protocol import AttemptRef, JobResult, JobRun, JobStart, Outcome
from app.worker.attempt import Attempt, KillReason
from app.worker.budget import FifoCoreBudget
from app.worker.config import WorkerConfig
from app.worker.runner import JobRunner

log = logging.getLogger("labbatch.worker")

Key = tuple[int, int, int]


class JobListener(Protocol):
    """Told when attempts start and end."""

    def job_started(self, start: JobStart) -> None: ...

    def job_ended(self, result: JobResult) -> None: ...


class JobTable:
    """Every attempt this worker knows, from schedule until the driver acks its result."""

    def __init__(self, config: WorkerConfig, *, bash_path: str, listener: JobListener) -> None:
        self._budget: FifoCoreBudget[Key] = FifoCoreBudget(config.cores_mcpu)
        self._listener = listener
        self._runner = JobRunner(config, bash_path=bash_path, on_end=self._on_end)
        self._queued: dict[Key, Attempt] = {}
        self._running: dict[Key, Attempt] = {}
        self._finished: dict[Key, JobResult] = {}
        self._pumping = False
        self._all_ended = asyncio.Event()
        self._all_ended.set()

    @property
    def n_running(self) -> int:
        return len(self._running)

    @property
    def free_mcpu(self) -> int:
        return self._budget.free_mcpu

    @property
    def is_idle(self) -> bool:
        """No attempt running or waiting for cores."""
        return not self._running and not self._queued

    def knows(self, key: Key) -> bool:
        """Whether the attempt is queued, running or finished and not yet acked."""
        return key in self._running or key in self._queued or key in self._finished

    def schedule(self, runs: Iterable[JobRun]) -> None:
        """Queue new attempts in order and start those that fit."""
        for run in runs:
            key = (run.batch_id, run.job_id, run.attempt)
            if self.knows(key):
                continue
            attempt = Attempt(run, self._budget.weight_of(run.cores_mcpu))
            self._queued[key] = attempt
            self._budget.enqueue(key, attempt.weight_mcpu)
        self._pump()

    def cancel(self, refs: Iterable[AttemptRef]) -> None:
        """Kill running attempts; end queued ones as CANCELLED at once."""
        for ref in refs:
            key = ref.key()
            if key in self._running:
                self._runner.kill(self._running[key], KillReason.CANCEL)
            elif key in self._queued:
                self._budget.withdraw(key)
                self._end_queued(self._queued.pop(key), "cancelled before it started")
        self._pump()

    def ack(self, refs: Iterable[AttemptRef]) -> None:
        """Forget stored results and their logs."""
        for ref in refs:
            if self._finished.pop(ref.key(), None) is not None:
                self._runner.forget_log(self.log_path(*ref.key()))

    def running(self) -> list[JobStart]:
        """JobStart of every running attempt."""
        return [attempt.job_start() for attempt in self._running.values()]

    def finished(self) -> list[JobResult]:
        """Every result not yet acked."""
        return list(self._finished.values())

    def forget_queued(self) -> int:
        """Drop attempts still waiting for cores (Hello has no field for them); return count."""
        for key in self._queued:
            self._budget.withdraw(key)
        n_dropped = len(self._queued)
        self._queued.clear()
        return n_dropped

    def kill_all(self, reason: KillReason) -> None:
        """Drop queued attempts and kill every running one."""
        self.forget_queued()
        for attempt in list(self._running.values()):
            self._runner.kill(attempt, reason)

    async def wait_all_ended(self) -> None:
        """Return once no attempt is running and scratch directories are removed."""
        await self._all_ended.wait()
        await self._runner.wait_cleanups()

    def cached_keys(self) -> dict[str, int]:
        """The cache keys of the inputs this worker's cache holds, and their sizes."""
        return self._runner.remote.cached_keys()

    def log_path(self, batch_id: int, job_id: int, attempt: int) -> str:
        """Where an attempt's log is (it may not exist)."""
        return self._runner.log_path(batch_id, job_id, attempt)

    def _on_end(self, attempt: Attempt, result: JobResult) -> None:
        # The runner's callback once a running attempt's process has been reaped.
        del self._running[attempt.key]
        self._budget.release(attempt.weight_mcpu)
        self._record(result)
        if not self._running:
            self._all_ended.set()
        self._pump()

    def _pump(self) -> None:
        # Starting a job can end it at once (no container runtime), which pumps again; the
        # flag turns that recursion into another pass of the outer loop.
        if self._pumping:
            return
        self._pumping = True
        self._runner.hold()  # the guard hears of every group started here in one write
        try:
            while granted := self._budget.pop_granted():
                for key in granted:
                    self._start(self._queued.pop(key))
        finally:
            self._pumping = False
            self._runner.release()

    def _start(self, attempt: Attempt) -> None:
        result = self._runner.start(attempt)
        if result is not None:
            self._budget.release(attempt.weight_mcpu)
            self._record(result)
            return
        self._running[attempt.key] = attempt
        self._all_ended.clear()
        self._listener.job_started(attempt.job_start())

    def _end_queued(self, attempt: Attempt, error: str) -> None:
        run = attempt.run
        result = JobResult(
            batch_id=run.batch_id,
            job_id=run.job_id,
            attempt=run.attempt,
            outcome=Outcome.CANCELLED,
            exit_code=None,
            start_time=None,
            end_time=time.time(),
            error=error,
        )
        self._record(result)

    def _record(self, result: JobResult) -> None:
        self._finished[(result.batch_id, result.job_id, result.attempt)] = result
        self._listener.job_ended(result)
