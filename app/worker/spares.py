"""Spent scratch dirs and logs kept under spare names, renamed into place for the next attempt.

Creating a file or directory was the worker's largest cost per no-op job after the spawn
itself: ext4 looks for a free inode that was not recently deleted, and a stream of jobs that
each make and delete a directory and a log file gives it many to skip (perf: ~25 % of the
worker's CPU in ``recently_deleted``). A rename allocates nothing. A kept directory is empty
(the caller checks); a kept log is truncated when its next attempt opens it.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
from collections.abc import Callable

MAX_SPARES = 64  # a few times the attempts that run at once on a large worker


class Spares:
    """Spare names in one directory; safe to use from two threads (deque and count are)."""

    def __init__(self, directory: str) -> None:
        self._prefix = f"{directory}/.spare-"
        self._free: collections.deque[str] = collections.deque()
        self._numbers = itertools.count()

    @property
    def full(self) -> bool:
        return len(self._free) >= MAX_SPARES

    def keep(self, path: str) -> bool:
        """Move ``path`` to a spare name; False if there are enough spares or it cannot move."""
        if self.full:
            return False
        spare = f"{self._prefix}{next(self._numbers)}"
        try:
            os.rename(path, spare)
        except OSError:  # gone, or a spare of an earlier agent that is not empty is in the way
            return False
        self._free.append(spare)
        return True

    def take(self, path: str) -> bool:
        """Rename a spare to ``path``; False if there is none (make it afresh then)."""
        try:
            spare = self._free.pop()
        except IndexError:
            return False
        try:
            os.rename(spare, path)
        except OSError:  # `path` is there and not empty: the spare stays, unused, on disk
            return False
        return True

    def remove_all(self, remove: Callable[[str], None]) -> None:
        """Remove every spare with ``remove`` (os.rmdir or os.unlink): the agent stops."""
        while self._free:
            with contextlib.suppress(OSError):
                remove(self._free.pop())
