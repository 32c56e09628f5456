"""A panel that stays current while it is shown: timers that poll, and engine signals that
ask for a refresh. The batches and pools panels are both one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QCloseEvent, QHideEvent, QShowEvent
from PySide6.QtWidgets import QWidget


class LivePanel(QWidget):
    """Subclasses give ``links()`` (bridge signal, slot) and ``refresh()``, and make their
    timers with ``timer()``; polling timers run only while the panel is shown."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._linked = False
        self._timers: list[QTimer] = []
        self._polling: list[QTimer] = []  # started on show, stopped on hide

    def links(self) -> Sequence[tuple[Any, Callable[..., None]]]:
        raise NotImplementedError

    def refresh(self) -> None:
        raise NotImplementedError

    def timer(
        self,
        interval_ms: int,
        slot: Callable[[], None],
        *,
        single_shot: bool = False,
        polls: bool = False,
    ) -> QTimer:
        """A timer owned by the panel and stopped when it closes; ``polls``: it runs while the
        panel is shown."""
        timer = QTimer(self)
        timer.setInterval(interval_ms)
        timer.setSingleShot(single_shot)
        timer.timeout.connect(slot)
        self._timers.append(timer)
        if polls:
            self._polling.append(timer)
        return timer

    def link(self) -> None:
        """Follow the engine's signals (idempotent)."""
        if not self._linked:
            for signal, slot in self.links():
                signal.connect(slot)
            self._linked = True

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.link()
        for timer in self._polling:
            timer.start()
        self.refresh()

    def hideEvent(self, event: QHideEvent) -> None:
        for timer in self._polling:
            timer.stop()
        super().hideEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._linked:
            for signal, slot in self.links():
                signal.disconnect(slot)
            self._linked = False
        for timer in self._timers:
            timer.stop()
        super().closeEvent(event)
