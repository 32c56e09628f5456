"""Retry a cloud call that failed transiently (a 5xx, a rate limit, a dropped connection).

For calls that are safe to repeat: reads, deletes (gone is fine), and inserts that carry a
request id or a name the cloud deduplicates on. Clouds sit below the engine, so they cannot
use app.engine.tasks.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.errors import CloudError

log = logging.getLogger("labbatch.clouds")
T = TypeVar("T")

DELAYS_S = (0.2, 0.5, 1.0)  # then give up: the caller's own backoff takes over


async def retry_transient(
    call: Callable[[], Awaitable[T]], *, doing: str, delays_s: tuple[float, ...] = DELAYS_S
) -> T:
    """Await ``call()``; on a transient CloudError try again after each of ``delays_s``
    (with jitter), then raise the last error."""
    for delay_s in (*delays_s, None):
        try:
            return await call()
        except CloudError as exc:
            if not exc.transient or delay_s is None:
                raise
            log.info("%s failed (%s); trying again", doing, str(exc).splitlines()[0])
            await asyncio.sleep(delay_s * random.uniform(0.8, 1.2))
    raise AssertionError("unreachable")  # pragma: no cover
