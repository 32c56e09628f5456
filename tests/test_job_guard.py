"""The job guard process on its own: what it kills once the worker's end of its pipe closes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from app.worker.guard import GUARD_SCRIPT
from app.worker.spawn import start_guard
from tests.worker_helpers import poll, process_gone


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Three `sleep 60` processes, each the leader of its own process group."""
    procs = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(3)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


async def test_guard_reads_several_lines_in_one_write(
    sleepers: list[subprocess.Popen[bytes]],
) -> None:
    # The worker sends the groups started and reaped in one pass in one write.
    first, second, forgotten = (proc.pid for proc in sleepers)
    read_fd, write_fd = os.pipe()
    guard_pid = start_guard(sys.executable, str(GUARD_SCRIPT), read_fd)
    os.close(read_fd)
    lines = b"+%d\n+%d\n+%d\n-%d\n" % (first, second, forgotten, forgotten)
    assert os.write(write_fd, lines) == len(lines)
    os.close(write_fd)  # as when the worker dies
    _, status = await asyncio.to_thread(os.waitpid, guard_pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    await poll(lambda: process_gone(first) and process_gone(second), timeout_s=5.0)
    assert not process_gone(forgotten)
    assert sleepers[0].poll() == sleepers[1].poll() == -signal.SIGKILL
