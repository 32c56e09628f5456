"""The worker's side of the job guard (see guard_main.py): start it, tell it each job's group.

One guard process per worker, not one per job: a job start costs one small pipe write.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from app.worker.spawn import start_guard

log = logging.getLogger("labbatch.worker")

GUARD_SCRIPT = Path(__file__).with_name("guard_main.py")


class JobGuard:
    """Keeps the guard process's list of live job groups up to date."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()  # both close-on-exec: no job inherits the pipe
        try:
            self.pid = start_guard(sys.executable, str(GUARD_SCRIPT), read_fd)
        finally:
            os.close(read_fd)

    def started(self, pgid: int) -> None:
        """A job's group now runs: kill it if this worker dies."""
        self._write(b"+%d\n" % pgid)

    def ended(self, pgid: int) -> None:
        """A job's group was reaped: forget it."""
        self._write(b"-%d\n" % pgid)

    def _write(self, line: bytes) -> None:
        if self._write_fd < 0:
            return
        try:
            os.write(self._write_fd, line)
        except OSError as exc:  # the guard died: jobs now die with the worker only on clean stops
            log.error("the job guard is gone (%s); jobs may outlive a killed worker", exc)
            os.close(self._write_fd)
            self._write_fd = -1
