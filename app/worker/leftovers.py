"""Find and kill job processes that a worker left behind (it died, or was SIGKILLed).

Every job of a worker carries ``LABBATCH_SCRATCH=<work dir>/scratch/<attempt>`` in its
environment, which its children inherit; /proc shows that to processes of the same user. A
worker that starts sweeps what an earlier worker of the same work dir left, and the local
cloud sweeps a dead worker's jobs before it reports the worker gone, so no attempt runs again
while the last one still runs.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

SCRATCH_VAR = b"LABBATCH_SCRATCH="
SWEEP_DEADLINE_S = 5.0
_POLL_S = 0.01


def job_processes(scratch_dir: Path) -> list[int]:
    """Pids of live processes whose job environment points into ``scratch_dir``."""
    marker = SCRATCH_VAR + str(scratch_dir).encode() + b"/"
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone meanwhile, or another user's
            continue
        if (environ.startswith(marker) or b"\0" + marker in environ) and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_leftovers(scratch_dir: Path, *, deadline_s: float = SWEEP_DEADLINE_S) -> list[int]:
    """SIGKILL every job process of ``scratch_dir`` and its group; wait until they are gone.

    Returns the pids found. Raises TimeoutError if some still live after ``deadline_s``.
    """
    found = job_processes(scratch_dir)
    deadline = time.monotonic() + deadline_s
    pids = found
    while pids:
        for pid in pids:
            _kill(pid)
        if time.monotonic() > deadline:
            raise TimeoutError(f"job processes {pids} still run after SIGKILL")
        time.sleep(_POLL_S)
        pids = [pid for pid in job_processes(scratch_dir) if _alive(pid)]
    return found


def _kill(pid: int) -> None:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    # never our own group (a worker started without a session of its own shares it)
    targets = [pid] if pgid == os.getpgrp() else [-pgid, pid]
    for target in targets:
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (dead, waiting for its parent to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")
