"""A cloud driver's own polling task: its VMs' states, checked every few seconds.

Clouds sit below the engine in the layers, so they cannot use app.engine.tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("labbatch.clouds")


class Watcher:
    """Runs ``check`` every ``interval_s()`` seconds from ``start()`` until ``stop()``; a
    failing check is logged and tried again at the next tick."""

    def __init__(
        self,
        name: str,
        check: Callable[[], Awaitable[None]],
        interval_s: Callable[[], float],
        what: str,
    ) -> None:
        self.name = name
        self._check = check
        self._interval_s = interval_s  # read at each tick: a changed interval applies at once
        self._what = what
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling (idempotent)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
            self._task.set_name(self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s())
            try:
                await self._check()
            except Exception:
                log.exception("checking %s failed; trying again", self._what)
