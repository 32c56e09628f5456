"""Local worker processes behind the CloudDriver interface."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from app.clouds.base import CreatedInstance, InstanceRequest, LostCallback
from app.errors import CloudError
from app.protocol import TOKEN_ENV
from app.worker.leftovers import kill_leftovers

log = logging.getLogger("labbatch.clouds.local")
READY = re.compile(rb"LABBATCH-WORKER READY port=(\d+)")
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


class LocalCloud:
    """Starts worker agents as child processes on 127.0.0.1 and stops them on close."""

    kind = "local"

    def __init__(
        self,
        work_root: Path,
        *,
        start_delay_s: float = 0.0,
        orphan_timeout_s: float = 60.0,
        python: str = sys.executable,
    ) -> None:
        self.work_root = work_root
        self.start_delay_s = start_delay_s
        self.orphan_timeout_s = orphan_timeout_s
        self.python = python
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._adopted: dict[str, int] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._deleting: set[str] = set()
        self._lost: LostCallback | None = None

    def on_lost(self, callback: LostCallback) -> None:
        self._lost = callback

    async def create_instance(self, request: InstanceRequest) -> CreatedInstance:
        delay_s = request.boot_delay_s or self.start_delay_s
        if delay_s:
            await asyncio.sleep(delay_s)  # a demo/test stand-in for VM boot time
        work_dir = self.work_root / request.name
        work_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.python, "-m", "app.worker",
            "--host", "127.0.0.1", "--port", "0",
            "--name", request.name,
            "--cores", str(request.cores_mcpu / 1000),
            "--work-dir", str(work_dir),
            "--orphan-timeout-s", str(self.orphan_timeout_s),
        ]  # fmt: skip
        if request.idle_timeout_s:
            argv += ["--idle-timeout-s", str(request.idle_timeout_s)]
        env = worker_env(request.token)
        stderr_path = work_dir / "worker.log"
        with stderr_path.open("ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
                start_new_session=True,  # the driver, not the terminal, decides when it stops
            )
        try:
            port = await self._await_ready(request.name, proc, stderr_path)
        except asyncio.CancelledError:
            # the driver stopped while this worker booted: it must not outlive the driver
            await asyncio.shield(_stop_child(proc))
            raise
        self._procs[request.name] = proc
        self._watch(request.name, proc)
        return CreatedInstance(
            name=request.name,
            address=f"127.0.0.1:{port}",
            location="local",
            handle={"pid": proc.pid, "port": port, "work_dir": str(work_dir)},
        )

    async def _await_ready(
        self, name: str, proc: asyncio.subprocess.Process, stderr_path: Path
    ) -> int:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), deadline - time.monotonic())
            except TimeoutError:
                break
            if not line:
                break
            match = READY.search(line)
            if match:
                return int(match.group(1))
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        tail = (await asyncio.to_thread(stderr_path.read_text, errors="replace"))[-2000:].strip()
        raise CloudError(f"local worker {name} did not start: {tail or 'no output'}")

    def _watch(self, name: str, proc: asyncio.subprocess.Process) -> None:
        async def watch() -> None:
            assert proc.stdout is not None
            await proc.stdout.read()  # drain until the worker closes stdout
            code = await proc.wait()
            self._procs.pop(name, None)
            if name not in self._deleting:
                # gone only once its jobs are: none of them may run beside a retry
                await self._sweep(name)
            if name not in self._deleting and self._lost is not None:
                self._lost(name, f"worker process exited with code {code}")

        task = asyncio.ensure_future(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def adopt_instance(self, name: str, handle: dict[str, Any]) -> bool:
        pid = int(handle.get("pid", 0))
        if not pid or not _is_worker(pid, name):
            return False
        self._adopted[name] = pid
        return True

    async def boot_log(self, name: str) -> str:
        """Local workers have no console beyond their own log."""
        return ""

    async def delete_instance(self, name: str, *, handle: dict[str, Any] | None = None) -> None:
        self._deleting.add(name)
        proc = self._procs.pop(name, None)
        if proc is not None:
            await _stop_child(proc)
        pid = self._adopted.pop(name, None)
        if pid is not None:
            await _stop_pid(pid, name)
        await self._sweep(name)

    async def _sweep(self, name: str) -> None:
        """Kill what a stopped worker's jobs left running and wait until it is gone."""
        scratch_dir = self.work_root / name / "scratch"
        try:
            found = await asyncio.to_thread(kill_leftovers, scratch_dir)
        except TimeoutError as exc:
            log.error("local worker %s: %s", name, exc)
            return
        if found:
            log.warning("killed %d process(es) left by local worker %s", len(found), name)

    async def delete_orphans(self, pool: str, known_names: Collection[str]) -> list[str]:
        """Nothing to sweep: a local worker whose driver is gone stops by itself (orphan
        timeout), and one started by an earlier driver is adopted by its pid."""
        return []

    async def release(self) -> None:
        """The workers run in sessions of their own and outlive this process; the next driver
        adopts them by pid, so there is nothing to stop here."""
        self._deleting.update(self._procs)  # their exits are the next driver's business

    async def close(self) -> None:
        names = list(self._procs) + list(self._adopted)
        await asyncio.gather(*(self.delete_instance(n) for n in names))
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)


# What a local worker inherits from the driver: enough to find Python and LabBatch, never the
# driver's own settings (LABBATCH_HOME, LABBATCH_SECRET_KEY, a database URL, cloud keys).
WORKER_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONPATH")


def worker_env(token: str) -> dict[str, str]:
    """The environment of a local worker process: the WORKER_ENV variables and its token."""
    env = {key: os.environ[key] for key in WORKER_ENV if key in os.environ}
    env[TOKEN_ENV] = token
    return env


def _is_worker(pid: int, name: str) -> bool:
    """True if ``pid`` is still the worker agent named ``name`` (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"app.worker" in cmdline and name.encode() in cmdline


async def _stop_child(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            try:  # a driver that stops must not hang on a child it cannot reap
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                log.error("local worker pid %d did not exit after SIGKILL", proc.pid)


async def _stop_pid(pid: int, name: str) -> None:
    """Stop a worker that is not our child (adopted after a driver restart)."""
    if not _is_worker(pid, name):
        return
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(pidfd, exited.set)  # a pidfd becomes readable when the process exits
    try:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(exited.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
