"""Local worker processes behind the CloudDriver interface."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
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


@dataclass
class SpareWorker:
    """A worker agent started before it was needed: loaded, it waits for its options."""

    proc: asyncio.subprocess.Process
    log_path: Path  # its stderr until it is taken, then moved into its work dir


async def start_spare(work_root: Path, *, python: str = sys.executable) -> SpareWorker:
    """Start a spare agent (`python -m app.worker --spare ROOT`) for a LocalCloud to take.

    `labbatch run` calls this first thing: the agent's start-up then overlaps the command's
    own, instead of following it. A spare nobody takes exits when its stdin closes.
    """
    log_path = _spare_log_path(work_root)
    with log_path.open("ab") as stderr:
        proc = await asyncio.create_subprocess_exec(
            # the root on its command line shows whose spare it is (ps, tests)
            python, "-m", "app.worker", "--spare", str(work_root),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=worker_env(None),
            start_new_session=True,
        )  # fmt: skip
    return SpareWorker(proc, log_path)


def _spare_log_path(work_root: Path) -> Path:
    work_root.mkdir(parents=True, exist_ok=True)
    return work_root / f"spare-{uuid.uuid4().hex[:8]}.log"


class LocalCloud:
    """Starts worker agents as child processes on 127.0.0.1 and stops them on close.

    Given a ``spare`` (start_spare), the first worker it creates is that process.
    """

    kind = "local"

    def __init__(
        self,
        work_root: Path,
        *,
        start_delay_s: float = 0.0,
        orphan_timeout_s: float = 60.0,
        python: str = sys.executable,
        spare: SpareWorker | None = None,
    ) -> None:
        self.work_root = work_root
        self._spare = spare
        self.start_delay_s = start_delay_s
        self.orphan_timeout_s = orphan_timeout_s
        self.python = python
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._adopted: dict[str, tuple[int, int | None]] = {}  # name -> pid, start ticks
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
        options = [
            "--host", "127.0.0.1", "--port", "0",
            "--name", request.name,
            "--cores", str(request.cores_mcpu / 1000),
            "--work-dir", str(work_dir),
            "--orphan-timeout-s", str(self.orphan_timeout_s),
        ]  # fmt: skip
        if request.idle_timeout_s:
            options += ["--idle-timeout-s", str(request.idle_timeout_s)]
        stderr_path = work_dir / "worker.log"
        handle: dict[str, Any] = {}
        proc = await self._take_spare(options, request.token, stderr_path)
        if proc is not None:
            handle["started"] = _start_ticks(proc.pid)  # a spare's command line has no name
        else:
            with stderr_path.open("ab") as stderr:
                proc = await asyncio.create_subprocess_exec(
                    self.python, "-m", "app.worker", *options,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    env=worker_env(request.token),
                    start_new_session=True,  # the driver, not the terminal, decides when it stops
                )  # fmt: skip
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
            handle={"pid": proc.pid, "port": port, "work_dir": str(work_dir), **handle},
        )

    async def _take_spare(
        self, options: list[str], token: str, stderr_path: Path
    ) -> asyncio.subprocess.Process | None:
        """Hand the spare (if any, and alive) its options and token; None: start one anew."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        if spare.proc.returncode is not None:
            log.warning(
                "the spare local worker exited (code %s); starting one", spare.proc.returncode
            )
            await discard_spare(spare)
            return None
        start = json.dumps({"argv": options, "token": token}).encode() + b"\n"
        try:
            assert spare.proc.stdin is not None
            spare.proc.stdin.write(start)
            await spare.proc.stdin.drain()
            spare.proc.stdin.close()
            os.replace(spare.log_path, stderr_path)
        except (ConnectionError, OSError) as exc:
            log.warning("the spare local worker could not be used (%s); starting one", exc)
            await discard_spare(spare)
            return None
        return spare.proc

    async def _await_ready(
        self, name: str, proc: asyncio.subprocess.Process, stderr_path: Path
    ) -> int:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    line = await proc.stdout.readline()
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
        started = handle.get("started")
        if not pid or not _is_worker(pid, name, started):
            return False
        self._adopted[name] = (pid, started)
        return True

    async def boot_log(self, name: str) -> str:
        """Local workers have no console beyond their own log."""
        return ""

    async def delete_instance(self, name: str, *, handle: dict[str, Any] | None = None) -> None:
        self._deleting.add(name)
        proc = self._procs.pop(name, None)
        if proc is not None:
            await _stop_child(proc)
        adopted = self._adopted.pop(name, None)
        if adopted is not None:
            await _stop_pid(*adopted, name)
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
        await self.drop_spare()

    async def drop_spare(self) -> None:
        """End the spare worker if no worker took it (the driver runs in another process)."""
        spare, self._spare = self._spare, None
        if spare is not None:
            await discard_spare(spare)

    async def close(self) -> None:
        await self.drop_spare()
        names = list(self._procs) + list(self._adopted)
        await asyncio.gather(*(self.delete_instance(n) for n in names))
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)


# What a local worker inherits from the driver: enough to find Python and LabBatch, never the
# driver's own settings (LABBATCH_HOME, LABBATCH_SECRET_KEY, a database URL, cloud keys).
WORKER_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "PYTHONPATH")


def worker_env(token: str | None) -> dict[str, str]:
    """The environment of a local worker process: the WORKER_ENV variables and its token
    (none for a spare, which reads it from stdin)."""
    env = {key: os.environ[key] for key in WORKER_ENV if key in os.environ}
    if token is not None:
        env[TOKEN_ENV] = token
    return env


async def discard_spare(spare: SpareWorker) -> None:
    """End a spare nobody took: end of its stdin makes it exit; its empty log goes."""
    if spare.proc.stdin is not None:
        spare.proc.stdin.close()
    await _stop_child(spare.proc)
    with contextlib.suppress(OSError):
        spare.log_path.unlink()


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (with the pid, names one process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def _is_worker(pid: int, name: str, started: int | None = None) -> bool:
    """True if ``pid`` is still the worker agent named ``name`` (guards against pid reuse).

    A worker started as a spare has no name on its command line: its start time tells.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if b"app.worker" not in cmdline:
        return False
    if name.encode() in cmdline:
        return True
    return started is not None and b"--spare" in cmdline and _start_ticks(pid) == started


async def _stop_child(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_GRACE_S):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            try:  # a driver that stops must not hang on a child it cannot reap
                async with asyncio.timeout(STOP_GRACE_S):
                    await proc.wait()
            except TimeoutError:
                log.error("local worker pid %d did not exit after SIGKILL", proc.pid)


async def _stop_pid(pid: int, started: int | None, name: str) -> None:
    """Stop a worker that is not our child (adopted after a driver restart)."""
    if not _is_worker(pid, name, started):
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
            async with asyncio.timeout(STOP_GRACE_S):
                await exited.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
