"""Desktop notifications: a batch of this user ended, a billing project passed 80 % of its limit."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QSystemTrayIcon, QWidget

from app.engine.events import BatchFinished, BudgetPassed
from app.views import style
from app.views.bridge import EngineBridge

_OUTCOME = {
    "success": "succeeded",
    "failure": "failed",
    "cancelled": "was cancelled",
}


class TrayNotifier(QObject):
    """Shows notifications in the system tray; emits each one for the status bar too."""

    notified = Signal(str, str)  # title, message

    def __init__(self, bridge: EngineBridge, icon: QIcon, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.user = bridge.service.user
        self.enabled = True
        self.shown: list[tuple[str, str]] = []
        self.tray: QSystemTrayIcon | None = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = QSystemTrayIcon(icon, self)
            self.tray.setToolTip("LabBatch")
            self.tray.show()
        bridge.batch_finished.connect(self._on_batch_finished)
        bridge.budget_passed.connect(self._on_budget_passed)

    def _on_batch_finished(self, event: BatchFinished) -> None:
        if event.user != self.user:
            return
        outcome = _OUTCOME.get(event.state, f"ended ({event.state})")
        self.notify(
            f"Batch {event.batch_id} {outcome}", f"{event.name}", error=event.state != "success"
        )

    def _on_budget_passed(self, event: BudgetPassed) -> None:
        percent = 100 * event.spent_usd / event.limit_usd if event.limit_usd else 100
        self.notify(
            f"Billing project {event.project} at {percent:.0f} % of its limit",
            f"{style.usd(event.spent_usd)} of {style.usd(event.limit_usd)} spent",
            error=True,
        )

    def notify(self, title: str, message: str, *, error: bool = False) -> None:
        if not self.enabled:
            return
        self.shown.append((title, message))
        if self.tray is not None:
            icon = (
                QSystemTrayIcon.MessageIcon.Warning
                if error
                else QSystemTrayIcon.MessageIcon.Information
            )
            self.tray.showMessage(title, message, icon, 8000)
        self.notified.emit(title, message)
