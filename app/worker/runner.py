"""Starts attempts as process groups, enforces timeouts, kills them, reports how they ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from app.protocol import JobResult, JobRun, Outcome
from app.worker import container, staging
from app.worker.attempt import Attempt, KillReason, Verdict, judge_exit, read_log_tail
from app.worker.config import WorkerConfig
from app.worker.guard import JobGuard
from app.worker.remote import RemoteFiles
from app.worker.simple import Exec, SimpleCommands
from app.worker.spares import Spares
from app.worker.spawn import ExitWatch, hold_during_exits, kill_group, spawn, spawn_in

log = logging.getLogger("labbatch.worker")

KILL_GRACE_S = 1.0


class JobRunner:
    """Runs one attempt per process group and calls ``on_end`` with its JobResult."""

    def __init__(
        self,
        config: WorkerConfig,
        *,
        bash_path: str,
        on_end: Callable[[Attempt, JobResult], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._bash_path = bash_path
        self._on_end = on_end
        self._scratch_root = str(config.scratch_dir)
        self._logs_root = str(config.logs_dir)
        self._batches_root = str(config.batches_dir)
        self._made_batch_dirs: set[str] = set()
        self._scratch_spares = Spares(self._scratch_root)
        self._log_spares = Spares(self._logs_root)
        self._cleaner = _ScratchCleaner(self._scratch_spares)
        self._base_env = job_base_env()
        self._simple = SimpleCommands()
        self._guard = JobGuard()
        self._holds = 0
        self._spent: list[str] = []  # empty scratch dirs of jobs that ended while held
        self._staging: dict[tuple[int, int, int], staging.Stats] = {}  # attempts with files
        self._tasks: set[asyncio.Task[None]] = set()
        self.remote = RemoteFiles(config.cache_dir, config.cache_share)  # signed-URL files
        hold_during_exits(self._loop, self)

    def hold(self) -> None:
        """Batch until ``release``: the guard's lines, and the scratch dirs of ended jobs,
        which go straight to the jobs that start meanwhile (one rename, not two).

        Only around synchronous code (the exits of one wake-up, a pass over the queue).
        """
        self._holds += 1
        self._guard.hold()

    def release(self) -> None:
        """Send the guard what was held; spent scratch dirs no job took become spares."""
        self._holds -= 1
        if not self._holds:
            while self._spent:
                spent = self._spent.pop()
                if not self._scratch_spares.keep(spent):
                    self._cleaner.remove(spent)
        self._guard.release()

    def log_path(self, batch_id: int, job_id: int, attempt: int) -> str:
        """Where an attempt's stdout and stderr go."""
        return f"{self._logs_root}/{batch_id}-{job_id}-{attempt}.log"

    def start(self, attempt: Attempt) -> JobResult | None:
        """Spawn the attempt; None once it runs, or the ERROR result if it could not start."""
        if staging.has_files(attempt.run):  # stage its inputs first, off the event loop
            attempt.start_time = time.time()
            self._staging[attempt.key] = staging.Stats()
            self._spawn_task(self._stage_and_start(attempt))
            return None
        return self._start_now(attempt)

    def _start_now(self, attempt: Attempt) -> JobResult | None:
        run = attempt.run
        scratch = self._scratch_path(run)
        log_path = self.log_path(*attempt.key)
        self._log_spares.take(log_path)  # else the spawn creates it
        try:
            executable, argv, env, direct = self._prepare(attempt, scratch)
            pid = None if direct is None else self._exec_simple(direct, scratch, log_path)
            if pid is None:
                pid = spawn(executable, argv, env, log_path=log_path)
        except _NoRuntimeError as exc:
            return _could_not_start(run, str(exc))
        except OSError as exc:
            self._remove_scratch(scratch)
            return _could_not_start(run, f"could not start the job: {exc}")
        try:
            attempt.watch = ExitWatch(self._loop, pid, lambda st: self._exited(attempt, st))
        except OSError as exc:  # out of file descriptors for the pidfd
            kill_group(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            self._remove_scratch(scratch)
            return _could_not_start(run, f"could not watch the job: {exc}")
        self._guard.started(pid)
        attempt.start_time = time.time()
        if run.timeout_s is not None:
            attempt.timeout = self._loop.call_later(run.timeout_s, self._time_out, attempt)
        return None

    def kill(self, attempt: Attempt, reason: KillReason) -> None:
        """Kill a running attempt's process group: SIGKILL on timeout, else SIGTERM first."""
        watch = attempt.watch
        if watch is None and attempt.key in self._staging and attempt.kill_reason is None:
            attempt.kill_reason = reason  # still staging: it ends once staging is done
        if watch is None or not watch.alive:
            return
        if attempt.kill_reason is None:
            attempt.kill_reason = reason
        if reason is KillReason.TIMEOUT:
            kill_group(watch.pid, signal.SIGKILL)
        else:
            kill_group(watch.pid, signal.SIGTERM)
            self._loop.call_later(KILL_GRACE_S, self._force_kill, watch)
        if attempt.runtime:
            self._kill_container(attempt)

    async def wait_cleanups(self) -> None:
        """Wait until every scratch directory handed to the cleaner is gone, spares too."""
        await asyncio.to_thread(self._cleaner.drain)
        await asyncio.to_thread(self._scratch_spares.remove_all, os.rmdir)
        await asyncio.to_thread(self._log_spares.remove_all, os.unlink)
        await self.remote.close()

    def _scratch_path(self, run: JobRun) -> str:
        return f"{self._scratch_root}/{run.batch_id}-{run.job_id}-{run.attempt}"

    @staticmethod
    def _exec_simple(direct: Exec, scratch: str, log_path: str) -> int | None:
        """Exec a simple command in its scratch dir: its pid, or None if bash must run it."""
        try:
            return spawn_in(
                direct.executable, direct.argv, direct.env, cwd=scratch, log_path=log_path
            )
        except OSError:  # e.g. a script without #!, which bash runs itself: let bash say what
            return None

    def _prepare(
        self, attempt: Attempt, scratch: str
    ) -> tuple[str, list[str], dict[str, str], Exec | None]:
        """Make the attempt's directories; return the executable, argv and env to spawn, and
        the exec of a simple command that needs no bash (tried first)."""
        run = attempt.run
        if run.image is not None:
            attempt.runtime = container.find_runtime()
            if attempt.runtime is None:
                raise _NoRuntimeError(container.no_runtime_error(run.image))
        batch_dir = self._batch_dir(run)
        if not self._take_spent(scratch) and not self._scratch_spares.take(scratch):
            try:
                os.mkdir(scratch)
            except FileExistsError:  # left by an earlier agent with the same work dir
                pass
        if run.paths:
            base = scratch if attempt.runtime is None else container.SCRATCH_MOUNT
            command = staging.substitute(run.command, run.paths, base)
            run = replace(run, command=command, env=staging.file_env(run, base) | run.env)
        if attempt.runtime is None:
            # LABBATCH_* last: a job's env cannot hide it from the sweep that finds its processes
            env = self._base_env | run.env | _labbatch_env(run, scratch, batch_dir)
            env.setdefault("TMPDIR", scratch)
            direct = self._simple.prepare(run.command, run.env, env, scratch)
            # posix_spawn has no cwd: cd first, on the same line so $LINENO and messages match
            # plain `bash -c`; bash still execs the last command without an extra fork.
            script = f"cd -- {shlex.quote(scratch)} || exit 1; {run.command}"
            return self._bash_path, ["bash", "-c", script], env, direct  # $0 is "bash"
        runtime = attempt.runtime
        inside = _labbatch_env(run, container.SCRATCH_MOUNT, container.BATCH_MOUNT) | run.env
        argv = container.container_argv(
            runtime, run, scratch_dir=scratch, batch_dir=batch_dir, job_env=inside
        )
        # the runtime client carries the marker too: a sweep finds it if its worker dies
        return runtime, argv, self._base_env | {"LABBATCH_SCRATCH": scratch}, None

    def _batch_dir(self, run: JobRun) -> str:
        batch_dir = run.batch_dir or f"{self._batches_root}/{run.batch_id}"
        if batch_dir not in self._made_batch_dirs:
            os.makedirs(batch_dir, exist_ok=True)
            self._made_batch_dirs.add(batch_dir)
        return batch_dir

    def _exited(self, attempt: Attempt, wait_status: int) -> None:
        end_time = time.time()
        if attempt.watch is not None:
            self._guard.ended(attempt.watch.pid)
        if attempt.timeout is not None:
            attempt.timeout.cancel()
        run = attempt.run
        verdict = judge_exit(attempt, os.waitstatus_to_exitcode(wait_status))
        if attempt.key in self._staging:
            self._spawn_task(self._save_and_end(attempt, verdict))
            return
        self._remove_scratch(self._scratch_path(run))
        result = JobResult(
            batch_id=run.batch_id,
            job_id=run.job_id,
            attempt=run.attempt,
            outcome=verdict.outcome,
            exit_code=verdict.exit_code,
            start_time=attempt.start_time,
            end_time=end_time,
            error=verdict.error,
            log=read_log_tail(self.log_path(*attempt.key)),
        )
        self._on_end(attempt, result)

    async def _stage_and_start(self, attempt: Attempt) -> None:
        scratch = self._scratch_path(attempt.run)
        stats = self._staging[attempt.key]
        result = None
        try:
            await staging.stage_inputs(attempt.run, scratch, stats, self.remote)
        except (staging.StagingError, OSError) as exc:
            result = _could_not_start(attempt.run, str(exc))
        if result is None and attempt.kill_reason is not None:
            verdict = judge_exit(attempt, -signal.SIGKILL)
            result = replace(
                _could_not_start(attempt.run, verdict.error or "killed"), outcome=verdict.outcome
            )
        if result is None and (result := self._start_now(attempt)) is None:
            return
        self._remove_scratch(scratch)
        figures = self._staging.pop(attempt.key).to_dict()
        self._on_end(attempt, replace(result, start_time=attempt.start_time, staging=figures))

    async def _save_and_end(self, attempt: Attempt, verdict: Verdict) -> None:
        """After exit 0, save the outputs; then report the attempt as the verdict says."""
        run = attempt.run
        scratch = self._scratch_path(run)
        stats = self._staging.pop(attempt.key)
        if verdict.outcome is Outcome.SUCCESS:
            try:
                await staging.save_outputs(run, scratch, stats, self.remote)
            except staging.OutputNotWritten as exc:
                verdict = Verdict(Outcome.FAILED, verdict.exit_code, str(exc))
            except (staging.StagingError, OSError) as exc:
                verdict = Verdict(Outcome.ERROR, verdict.exit_code, str(exc))
        self._remove_scratch(scratch)
        result = JobResult(
            batch_id=run.batch_id,
            job_id=run.job_id,
            attempt=run.attempt,
            outcome=verdict.outcome,
            exit_code=verdict.exit_code,
            start_time=attempt.start_time,
            end_time=time.time(),  # the attempt includes saving its outputs
            error=verdict.error,
            log=read_log_tail(self.log_path(*attempt.key)),
            staging=stats.to_dict(),
        )
        self._on_end(attempt, result)

    def _spawn_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _time_out(self, attempt: Attempt) -> None:
        log.info("attempt %s timed out after %ss", attempt.key, attempt.run.timeout_s)
        self.kill(attempt, KillReason.TIMEOUT)

    def _force_kill(self, watch: ExitWatch) -> None:
        if watch.alive:
            kill_group(watch.pid, signal.SIGKILL)

    def _kill_container(self, attempt: Attempt) -> None:
        assert attempt.runtime is not None
        argv = container.kill_argv(attempt.runtime, attempt.run)
        try:
            pid = spawn(argv[0], argv, self._base_env, log_path=os.devnull)
        except OSError as exc:
            log.warning("could not run %s: %s", shlex.join(argv), exc)
            return
        ExitWatch(self._loop, pid, lambda _status: None)

    def _take_spent(self, scratch: str) -> bool:
        """Rename the scratch dir of a job that ended in this pass to ``scratch``."""
        if not self._spent:
            return False
        spent = self._spent.pop()
        try:
            os.rename(spent, scratch)
        except OSError:  # `scratch` is there and not empty: the release makes it a spare
            self._spent.append(spent)
            return False
        return True

    def _remove_scratch(self, scratch: str) -> None:
        # The usual empty dir becomes a spare at once: a scandir and a rename cost less CPU than
        # handing it to the cleaner thread (a futex wake and a GIL hand-off each time). While
        # held, it waits under its name for a job that starts in the same pass.
        try:
            if _is_empty(scratch):
                if self._holds:
                    self._spent.append(scratch)
                    return
                if self._scratch_spares.keep(scratch):
                    return
        except FileNotFoundError:
            return
        except OSError:
            pass
        self._cleaner.remove(scratch)

    def forget_log(self, log_path: str) -> None:
        """An acked attempt's log: kept as a spare for a later attempt, else deleted."""
        if not self._log_spares.keep(log_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(log_path)


class _ScratchCleaner:
    """Removes scratch directories on one background thread; empty ones become spares.

    rmdir cost ~170 us per job on the event loop, a fifth of the agent's own time per no-op
    job; a queue hand-off costs a microsecond (and a wake of this thread).
    """

    def __init__(self, spares: Spares) -> None:
        self._spares = spares
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="scratch-cleaner", daemon=True)
        self._thread.start()

    def remove(self, path: str) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(path)

    def drain(self) -> None:
        """Block until every directory queued so far is removed."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)

    def _run(self) -> None:
        while True:
            path = self._queue.get()
            if path is None:
                return
            try:
                if not (_is_empty(path) and self._spares.keep(path)):
                    os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                shutil.rmtree(path, ignore_errors=True)
            with self._idle:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.notify_all()


def _is_empty(path: str) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


def _could_not_start(run: JobRun, error: str) -> JobResult:
    return JobResult(
        batch_id=run.batch_id,
        job_id=run.job_id,
        attempt=run.attempt,
        outcome=Outcome.ERROR,
        exit_code=None,
        start_time=None,
        end_time=time.time(),
        error=error,
    )


class _NoRuntimeError(Exception):
    """An image job on a worker without docker or podman."""


def job_base_env() -> dict[str, str]:
    """What a job inherits from its worker: PATH and HOME, nothing else.

    Never the worker's (or its driver's) own variables: they may hold secrets or point at
    LabBatch's data dir. The job spec's env and the LABBATCH_* variables come on top.
    """
    home = os.environ.get("HOME") or os.path.expanduser("~")
    return {"PATH": os.environ.get("PATH") or os.defpath, "HOME": home}


def _labbatch_env(run: JobRun, scratch: str, batch_dir: str) -> dict[str, str]:
    return {
        "LABBATCH_BATCH_ID": str(run.batch_id),
        "LABBATCH_JOB_ID": str(run.job_id),
        "LABBATCH_JOB_NAME": run.name,
        "LABBATCH_ATTEMPT_ID": str(run.attempt),
        "LABBATCH_SCRATCH": scratch,
        "LABBATCH_BATCH_DIR": batch_dir,
    }
