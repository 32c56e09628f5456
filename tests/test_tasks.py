"""The engine's task manager: its loops stop when it stops, whatever they were doing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from app.engine.tasks import TaskManager


async def test_a_loop_poked_just_as_the_manager_stops_still_stops() -> None:
    # The poke and the cancel land in the same turn of the event loop, as when a batch is
    # submitted (which pokes the scheduler) right before the engine stops. Python 3.11's
    # asyncio.wait_for returned normally then, swallowing the cancel, and the loop waited
    # for its next poke forever; the CI run hung in stop. Every interleaving is tried.
    for turns in range(6):
        manager = TaskManager()
        ran = asyncio.Event()
        trigger = manager.every("poked", _setter(ran), interval_s=60.0)
        async with asyncio.timeout(5.0):
            await ran.wait()
        await asyncio.sleep(0.01)  # it waits for its next poke
        trigger.poke()
        for _ in range(turns):
            await asyncio.sleep(0)
        async with asyncio.timeout(5.0):
            await manager.stop()


def _setter(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        event.set()

    return body
