"""How the desktop looks: state colours, the palette that follows the system, value formats."""

from __future__ import annotations

import time
from decimal import Decimal

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from app.engine.service import format_usd
from app.models.units import format_duration, format_mcpu

# one colour per state, readable on light and dark backgrounds
STATE_COLORS: dict[str, str] = {
    # jobs
    "Pending": "#9e9e9e",
    "Ready": "#8d6e63",
    "Creating": "#42a5f5",
    "Running": "#1e88e5",
    "Success": "#43a047",
    "Failed": "#e53935",
    "Error": "#fb8c00",
    "Cancelled": "#757575",
    # batches
    "running": "#1e88e5",
    "success": "#43a047",
    "failure": "#e53935",
    "cancelled": "#757575",
    # instances
    "pending": "#fdd835",
    "active": "#43a047",
    "inactive": "#9e9e9e",
    "deleting": "#fb8c00",  # retired, but the cloud has not confirmed its VM gone
    "deleted": "#616161",
}
JOB_STATES = ("Pending", "Ready", "Creating", "Running", "Success", "Failed", "Error", "Cancelled")
BATCH_STATES = ("running", "success", "failure", "cancelled")


def state_color(state: str) -> QColor:
    return QColor(STATE_COLORS.get(state, "#9e9e9e"))


def usd(amount: Decimal | float) -> str:
    return format_usd(amount if isinstance(amount, Decimal) else Decimal(str(amount)))


def duration(seconds: float | None) -> str:
    return "" if seconds is None else format_duration(seconds)


def cores(mcpu: int) -> str:
    return format_mcpu(mcpu)


def clock(timestamp: float | None) -> str:
    """A local time: 'HH:MM:SS' today, else 'YYYY-MM-DD HH:MM'."""
    if timestamp is None:
        return ""
    if time.strftime("%Y%m%d", time.localtime(timestamp)) == time.strftime("%Y%m%d"):
        return time.strftime("%H:%M:%S", time.localtime(timestamp))
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return hints.colorScheme() == Qt.ColorScheme.Dark


def apply_palette(app: QApplication) -> None:
    """Fusion style with a dark or light palette, following the system's colour scheme."""
    app.setStyle("Fusion")
    app.setPalette(_dark_palette() if is_dark() else app.style().standardPalette())


def _dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(30, 30, 30), QColor(45, 45, 48), QColor(220, 220, 220)
    for role, color in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, window),
        (QPalette.ColorRole.ToolTipBase, window),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, window),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.Highlight, QColor(38, 110, 190)),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.Link, QColor(90, 160, 255)),
    ):
        p.setColor(role, color)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(120, 120, 120))
    return p
