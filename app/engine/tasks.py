"""Background loops: one manager that keeps task references, names them and stops them all."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("labbatch.tasks")
T = TypeVar("T")


class Trigger:
    """Wakes a loop early: ``poke()`` from anywhere on the loop's thread."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def poke(self) -> None:
        self._event.set()

    async def wait(self, timeout_s: float | None) -> None:
        # not asyncio.wait_for: on Python 3.11 it swallows a cancel that lands in the turn a
        # poke wakes it, and the loop then never stops (pyproject bans it; see test_tasks)
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            pass
        self._event.clear()


class TaskManager:
    """Owns the engine's background tasks; logs their failures; cancels them on stop."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def spawn(self, name: str, coro: Awaitable[T]) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._on_done)
        return task

    def every(
        self,
        name: str,
        body: Callable[[], Awaitable[object]],
        *,
        interval_s: float | None,
        min_interval_s: float = 0.0,
    ) -> Trigger:
        """Run ``body`` when poked, or every ``interval_s`` (None: only when poked)."""
        trigger = Trigger()
        self.spawn(name, self._loop(name, body, trigger, interval_s, min_interval_s))
        return trigger

    async def _loop(
        self,
        name: str,
        body: Callable[[], Awaitable[object]],
        trigger: Trigger,
        interval_s: float | None,
        min_interval_s: float,
    ) -> None:
        while True:
            try:
                await body()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("loop %s failed; it will run again", name)
                await asyncio.sleep(min(1.0, interval_s or 1.0))
            if min_interval_s:
                await asyncio.sleep(min_interval_s)
            await trigger.wait(interval_s)

    def _on_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s died", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()


async def retry_with_backoff(
    body: Callable[[], Awaitable[T]],
    *,
    name: str,
    is_transient: Callable[[BaseException], bool],
    max_attempts: int = 5,
    first_delay_s: float = 0.1,
    max_delay_s: float = 30.0,
) -> T:
    """Call ``body`` until it succeeds, with a jittered, doubling delay after transient errors."""
    delay = first_delay_s
    for attempt in range(1, max_attempts + 1):
        try:
            return await body()
        except Exception as exc:
            if attempt == max_attempts or not is_transient(exc):
                raise
            log.warning("%s failed (attempt %d/%d): %s", name, attempt, max_attempts, exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, max_delay_s)
    raise AssertionError("unreachable")
