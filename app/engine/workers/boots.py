"""A new worker's boot: dial it with backoff until it answers or its pool's deadline passes.

A cloud says a VM exists long before its start-up script has installed and started the
worker (apt, a venv, pip: tens of seconds to minutes), and the worker's port refuses
connections meanwhile. So the driver keeps dialling; only a VM that misses the deadline is
deleted, with the last lines of its serial console in the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

from app.clouds.base import CloudDriver
from app.errors import CloudError
from app.models.units import format_duration

log = logging.getLogger("labbatch.fleet")

# seconds between dials of a booting worker: soon at first (an image with the worker boots
# in seconds), then every few seconds (a cold pip install takes minutes)
DIAL_DELAYS_S = (0.5, 1.0, 1.0, 2.0, 3.0)
BOOT_LOG_TIMEOUT_S = 10.0
BOOT_LOG_LINES = 12
BOOT_LOG_LINE_CHARS = 200


class BootOutcome(StrEnum):
    """How dialling a booting worker ended."""

    UP = "up"  # it answered
    GONE = "gone"  # retired meanwhile (drained, or the cloud reported it failed)
    LATE = "late"  # the deadline passed


class BootFailedError(CloudError):
    """A VM failed to boot (the cloud says so, or it missed its deadline); it is deleted.
    The message may go on with the last lines of its serial console."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


def _with_console(message: str, console: list[str]) -> str:
    if not console:
        return message
    return f"{message}; last lines of its serial console:\n" + "\n".join(
        f"  | {line}" for line in console
    )


def dial_delay_s(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th failed dial (0-based)."""
    return DIAL_DELAYS_S[min(attempt, len(DIAL_DELAYS_S) - 1)]


async def dial_until_up(
    connect: Callable[[], Awaitable[bool]],
    *,
    wanted: Callable[[], bool],
    deadline: float,
) -> BootOutcome:
    """Dial with backoff until ``connect()`` succeeds, ``wanted()`` turns false, or the
    wall-clock ``deadline`` passes."""
    attempt = 0
    while wanted():
        if await connect():
            return BootOutcome.UP if wanted() else BootOutcome.GONE
        left_s = deadline - time.time()
        if left_s <= 0:
            return BootOutcome.LATE
        await asyncio.sleep(min(dial_delay_s(attempt), left_s))
        attempt += 1
    return BootOutcome.GONE


def tail(text: str, lines: int = BOOT_LOG_LINES) -> list[str]:
    """The last non-empty lines of a console log, each cut to a readable length."""
    kept = [line.rstrip()[:BOOT_LOG_LINE_CHARS] for line in text.splitlines() if line.strip()]
    return kept[-lines:]


async def boot_log_tail(cloud: CloudDriver, name: str) -> list[str]:
    """The last lines of a VM's serial console / boot diagnostics, if the cloud offers them;
    never raises (it only explains a failure)."""
    try:
        async with asyncio.timeout(BOOT_LOG_TIMEOUT_S):
            text = await cloud.boot_log(name)
    except Exception as exc:
        log.info("could not read the boot log of %s: %s", name, exc)
        return []
    return tail(text or "")


def failed_while_booting(name: str, reason: str, console: list[str]) -> BootFailedError:
    """The error for a VM that the cloud reports failed (stopped, gone) while it booted."""
    return BootFailedError(_with_console(f"VM {name} failed while booting: {reason}", console))


def missed_deadline(name: str, deadline_s: float, console: list[str]) -> BootFailedError:
    """The error for a VM whose worker did not answer within ``deadline_s``."""
    message = (
        f"VM {name} booted but its worker did not answer within the pool's boot deadline "
        f"of {format_duration(deadline_s)}; LabBatch deleted it and will try a new one "
        "(a slow start-up: raise it with `labbatch pool set NAME --boot-deadline SECONDS`)"
    )
    return BootFailedError(_with_console(message, console))
