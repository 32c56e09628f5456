"""The job guard: kills the worker's job process groups the moment the worker dies.

Run as a script (``python -I -S guard_main.py``), not imported: it needs only the standard
library and starts in a few milliseconds. Its stdin is a pipe from the worker, which writes
``+PGID`` when a job starts and ``-PGID`` once it has reaped it. End of file means the worker
is gone, whatever killed it (SIGKILL included): every group still listed gets SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys


def _apply(line: bytes, groups: set[int]) -> None:
    if len(line) < 2 or not line[1:].isdigit():
        return
    pgid = int(line[1:])
    if line[:1] == b"+":
        groups.add(pgid)
    else:
        groups.discard(pgid)


def main() -> int:
    """Read the pipe until it closes, then SIGKILL the groups still running."""
    # The guard lives in a session of its own; a signal aimed at the worker's terminal or
    # group must not take it down before the worker's jobs.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    groups: set[int] = set()
    pending = b""
    while chunk := os.read(0, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            _apply(line, groups)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if groups:
        print(f"labbatch guard: the worker died; killed {len(groups)} job(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
