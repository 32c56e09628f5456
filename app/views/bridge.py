"""The one bridge between the engine and Qt: engine events become signals, calls become tasks.

Widgets receive the bridge in their constructor, connect to its signals and start engine
calls with `call`, which runs the coroutine on the qasync loop and hands the result to a slot
(only while the widget that asked is alive). User errors become `user_error`; anything else is
logged with its traceback and shown as a short internal-error message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import QObject, Signal

from app.engine.events import (
    BatchChanged,
    BatchFinished,
    BudgetPassed,
    Event,
    InstanceChanged,
    JobsChanged,
    LeaseChanged,
    MetricsSampled,
)
from app.engine.service import EngineService
from app.errors import UserError

log = logging.getLogger("labbatch.views")
T = TypeVar("T")


class EngineBridge(QObject):
    """Re-emits the engine's events as Qt signals and runs engine calls for widgets."""

    batch_changed = Signal(object)  # BatchChanged
    jobs_changed = Signal(object)  # JobsChanged
    instance_changed = Signal(object)  # InstanceChanged
    lease_changed = Signal(bool)
    batch_finished = Signal(object)  # BatchFinished
    budget_passed = Signal(object)  # BudgetPassed
    metrics_sampled = Signal(object)  # MetricsSample
    user_error = Signal(str)  # a message for the user (bad input, refused action)
    internal_error = Signal(str)
    pools_changed = Signal()  # this desktop changed a pool's settings or size
    batches_changed = Signal()  # this desktop submitted, cancelled, retried or deleted a batch

    def __init__(self, service: EngineService, *, log_file: str = "") -> None:
        super().__init__()
        self.service = service
        self.log_file = log_file
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe = service.bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        match event:
            case MetricsSampled(sample=sample):
                self.metrics_sampled.emit(sample)
            case BatchChanged():
                self.batch_changed.emit(event)
            case JobsChanged():
                self.jobs_changed.emit(event)
            case InstanceChanged():
                self.instance_changed.emit(event)
            case LeaseChanged(held=held):
                self.lease_changed.emit(held)
            case BatchFinished():
                self.batch_finished.emit(event)
            case BudgetPassed():
                self.budget_passed.emit(event)

    def call(
        self,
        coro: Coroutine[Any, Any, T],
        on_done: Callable[[T], object] | None = None,
        *,
        on_error: Callable[[Exception], object] | None = None,
    ) -> asyncio.Task[T]:
        """Run an engine coroutine; deliver its result to ``on_done`` on the Qt thread.

        A user error goes to ``on_error`` when given, else to the `user_error` signal.
        """
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def finished(t: asyncio.Task[T]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is None:
                if on_done is not None and _alive(on_done):
                    on_done(t.result())
            elif isinstance(exc, UserError):
                if on_error is not None and _alive(on_error):
                    on_error(exc)
                else:
                    self.user_error.emit(str(exc))
            elif isinstance(exc, Exception):
                self.report_internal(exc)

        task.add_done_callback(finished)
        return task

    def report_internal(self, exc: BaseException) -> None:
        """Log a bug with its traceback; show a short message that says where the log is."""
        log.error("internal error", exc_info=exc)
        where = f" (details in {self.log_file})" if self.log_file else ""
        self.internal_error.emit(f"Internal error: {type(exc).__name__}: {exc}{where}")

    @property
    def n_pending_calls(self) -> int:
        return len(self._tasks)

    async def close(self, *, grace_s: float = 5.0) -> None:
        """Stop listening; let the calls in flight finish (a read cancelled halfway through can
        leave SQLite locked for the driver's last write), cancelling any still running after
        ``grace_s``."""
        self._unsubscribe()
        pending = set(self._tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)


def _alive(callback: Callable[..., object]) -> bool:
    """False when a bound slot's widget was deleted (a result arrived after it closed)."""
    owner = getattr(callback, "__self__", None)
    return not isinstance(owner, QObject) or shiboken6.isValid(owner)
