"""Run a real worker agent process and talk to it as a driver would."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp

from app.protocol import (
    HEALTH_PATH,
    TOKEN_ENV,
    WS_PATH,
    Ack,
    AttemptRef,
    Cancel,
    Completed,
    Hello,
    JobResult,
    JobRun,
    JobStart,
    Message,
    Schedule,
    Started,
    bearer,
    decode,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "LABBATCH-WORKER READY port="
DEADLINE_S = 10.0

M = TypeVar("M", bound=Message)
Key = tuple[int, int, int]


def job(job_id: int, command: str, **fields: object) -> JobRun:
    """A JobRun in batch 1, attempt 1, with 100 mcpu unless told otherwise."""
    values: dict[str, object] = {
        "batch_id": 1,
        "job_id": job_id,
        "attempt": 1,
        "name": f"job-{job_id}",
        "command": command,
        "cores_mcpu": 100,
    }
    values.update(fields)
    return JobRun(**values)  # type: ignore[arg-type]


def key_of(item: JobRun | JobStart | JobResult | AttemptRef) -> Key:
    """The (batch, job, attempt) key of a run, result or ref."""
    return (item.batch_id, item.job_id, item.attempt)


@dataclass
class WorkerProcess:
    """A running ``python -m app.worker`` and where its stderr goes."""

    proc: asyncio.subprocess.Process
    port: int
    token: str
    work_dir: Path
    stderr_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def wait_exit(self, timeout_s: float = DEADLINE_S) -> int:
        """Wait for the agent to exit by itself; return its exit code."""
        return await asyncio.wait_for(self.proc.wait(), timeout_s)

    async def stop(self) -> None:
        """SIGTERM the agent if it still runs, then SIGKILL after a deadline."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), DEADLINE_S)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.stdout is not None
        await self.proc.stdout.read()


async def start_worker(
    tmp_path: Path,
    *,
    token: str = "s3cret-token-for-tests",
    cores: str = "2",
    extra_args: Iterable[str] = (),
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start an agent on a free port and wait for its READY line."""
    work_dir = tmp_path / "work"
    stderr_path = tmp_path / "worker-stderr.log"
    child_env = dict(os.environ if env is None else env)
    child_env[TOKEN_ENV] = token
    child_env["PYTHONPATH"] = str(REPO_ROOT)
    argv = [sys.executable, "-m", "app.worker", "--port", "0", "--name", "test-worker"]
    argv += ["--cores", cores, "--work-dir", str(work_dir), *extra_args]
    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=child_env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), DEADLINE_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = line.decode().strip()
    if not text.startswith(READY_PREFIX):
        await proc.wait()
        raise AssertionError(f"no READY line, got {text!r}: {stderr_path.read_text()}")
    port = int(text.removeprefix(READY_PREFIX))
    return WorkerProcess(proc, port, token, work_dir, stderr_path)


@dataclass
class Driver:
    """A WebSocket client that plays the driver's part."""

    session: aiohttp.ClientSession
    ws: aiohttp.ClientWebSocketResponse
    hello: Hello
    frames: list[Message] = field(default_factory=list)

    async def send(self, message: Message) -> None:
        await self.ws.send_str(message.to_json())

    async def schedule(self, *runs: JobRun) -> None:
        await self.send(Schedule(jobs=list(runs)))

    async def cancel(self, *keys: Key) -> None:
        await self.send(Cancel(attempts=[AttemptRef(*k) for k in keys]))

    async def ack(self, *keys: Key) -> None:
        await self.send(Ack(attempts=[AttemptRef(*k) for k in keys]))

    async def receive(self, timeout_s: float = DEADLINE_S) -> Message:
        """The next frame from the worker."""
        frame = await asyncio.wait_for(self.ws.receive(), timeout_s)
        if frame.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"worker sent {frame.type.name}, not a text frame")
        message = decode(frame.data)
        self.frames.append(message)
        return message

    async def wait_for(
        self,
        kind: type[M],
        predicate: Callable[[M], bool] = lambda _m: True,
        timeout_s: float = DEADLINE_S,
    ) -> M:
        """Receive frames until one of ``kind`` matches ``predicate``."""
        deadline = time.monotonic() + timeout_s
        while True:
            message = await self.receive(max(0.01, deadline - time.monotonic()))
            if isinstance(message, kind) and predicate(message):
                return message

    async def wait_started(self, *keys: Key, timeout_s: float = DEADLINE_S) -> None:
        """Receive frames until every key was in a Started frame."""
        pending = set(keys)
        deadline = time.monotonic() + timeout_s
        while pending:
            message = await self.receive(max(0.01, deadline - time.monotonic()))
            if isinstance(message, Started):
                pending -= {key_of(s) for s in message.jobs}

    async def results(self, *keys: Key, timeout_s: float = DEADLINE_S) -> dict[Key, JobResult]:
        """Receive frames until every key was in a Completed frame."""
        found: dict[Key, JobResult] = {}
        deadline = time.monotonic() + timeout_s
        while not set(keys) <= found.keys():
            message = await self.receive(max(0.01, deadline - time.monotonic()))
            if isinstance(message, Completed):
                found.update((key_of(r), r) for r in message.jobs)
        return found

    async def result(self, key: Key, timeout_s: float = DEADLINE_S) -> JobResult:
        return (await self.results(key, timeout_s=timeout_s))[key]

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


async def connect(worker: WorkerProcess) -> Driver:
    """Open an authenticated driver connection and read its Hello."""
    session = aiohttp.ClientSession()
    try:
        ws = await session.ws_connect(
            worker.base_url + WS_PATH, headers={"Authorization": bearer(worker.token)}
        )
        first = decode((await asyncio.wait_for(ws.receive(), DEADLINE_S)).data)
    except BaseException:
        await session.close()
        raise
    assert isinstance(first, Hello), first
    return Driver(session, ws, first)


async def poll(condition: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.02)


async def poll_health(
    worker: WorkerProcess,
    condition: Callable[[dict[str, object]], bool],
    timeout_s: float = DEADLINE_S,
) -> None:
    """Poll the worker's health endpoint until ``condition`` holds for its JSON body."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            headers = {"Authorization": bearer(worker.token)}
            async with session.get(worker.base_url + HEALTH_PATH, headers=headers) as response:
                if condition(await response.json()):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"health condition not met within {timeout_s}s")
            await asyncio.sleep(0.02)


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = stat.rsplit(")", 1)[1].split()[0]
    return state in ("Z", "X")


def read_pids(path: Path) -> list[int]:
    """The pids written one per line to ``path``, or [] if it is not complete yet."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    if not text.endswith("\n"):
        return []
    return [int(line) for line in text.split()]
