"""Plain events the engine publishes; the GUI bridge turns them into Qt signals."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.engine.metrics import MetricsSample

log = logging.getLogger("labbatch.events")


@dataclass(frozen=True, slots=True)
class BatchChanged:
    """A batch's counts or state changed."""

    batch_id: int
    state: str
    complete: bool


@dataclass(frozen=True, slots=True)
class JobsChanged:
    """Jobs of a batch changed state (a burst is one event)."""

    batch_id: int
    n_changed: int


@dataclass(frozen=True, slots=True)
class InstanceChanged:
    """A worker instance changed state."""

    name: str
    pool: str
    state: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseChanged:
    """This process gained or lost the driver lease."""

    held: bool


@dataclass(frozen=True, slots=True)
class BatchFinished:
    """A batch ended (whichever process drove it); sent once per batch."""

    batch_id: int
    name: str
    user: str
    state: str


@dataclass(frozen=True, slots=True)
class BudgetPassed:
    """A billing project's spend passed 80 % of its limit."""

    project: str
    spent_usd: float
    limit_usd: float


@dataclass(frozen=True, slots=True)
class MetricsSampled:
    """A new dashboard sample (about once a second)."""

    sample: MetricsSample


Event = (
    BatchChanged
    | JobsChanged
    | InstanceChanged
    | LeaseChanged
    | BatchFinished
    | BudgetPassed
    | MetricsSampled
)
Listener = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out of engine events to listeners."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def publish(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %r", listener, event)
