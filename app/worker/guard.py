"""The worker's side of the job guard (see guard_main.py): start it, tell it each job's group.

One guard process per worker, not one per job: a job start costs one small pipe write, and
less while the guard is held: the groups that start and end in one synchronous pass of the
worker (the jobs started from its queue, the exits of one wake-up) go in one write at the
end of that pass, before the event loop runs anything else.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from app.worker.spawn import start_guard

log = logging.getLogger("labbatch.worker")

GUARD_SCRIPT = Path(__file__).with_name("guard_main.py")
# Held lines go out at least this often: a pass that starts many jobs (a large worker taking a
# full Schedule) leaves none unguarded for longer than a few spawns.
MAX_HELD_LINES = 16


class JobGuard:
    """Keeps the guard process's list of live job groups up to date."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()  # both close-on-exec: no job inherits the pipe
        try:
            self.pid = start_guard(sys.executable, str(GUARD_SCRIPT), read_fd)
        finally:
            os.close(read_fd)
        self._pending = bytearray()
        self._n_pending = 0
        self._holds = 0

    def started(self, pgid: int) -> None:
        """A job's group now runs: kill it if this worker dies."""
        self._send(b"+%d\n" % pgid)

    def ended(self, pgid: int) -> None:
        """A job's group was reaped: forget it."""
        self._send(b"-%d\n" % pgid)

    def hold(self) -> None:
        """Keep what ``started`` and ``ended`` say until the matching ``release``.

        Only around synchronous code: a group started meanwhile is unguarded until then, or
        until ``MAX_HELD_LINES`` lines wait.
        """
        self._holds += 1

    def release(self) -> None:
        """Send what was kept since the outermost ``hold``, in one write."""
        self._holds -= 1
        if not self._holds and self._pending:
            self._flush()

    def _send(self, line: bytes) -> None:
        self._pending += line
        self._n_pending += 1
        if not self._holds or self._n_pending >= MAX_HELD_LINES:
            self._flush()

    def _flush(self) -> None:
        data = self._pending
        self._pending = bytearray()
        self._n_pending = 0
        if self._write_fd < 0:
            return
        try:
            while data:  # one write unless a signal cut it short (the guard reads lines)
                del data[: os.write(self._write_fd, data)]
        except OSError as exc:  # the guard died: jobs now die with the worker only on clean stops
            log.error("the job guard is gone (%s); jobs may outlive a killed worker", exc)
            os.close(self._write_fd)
            self._write_fd = -1
