"""The dashboard's "Worker file cache" table: per pool and worker, what its input cache holds
and what it saved (hits, bytes not downloaded).

The figures come from the service every few seconds while the table is visible; one call at a
time, and none while hidden.
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import WorkerCache
from app.models.units import format_size
from app.views.bridge import EngineBridge

CACHE_COLUMNS = ("Pool", "Worker", "Cached", "Entries", "Hits", "Bytes saved")
REFRESH_EVERY_MS = 5000
UNKNOWN = "—"  # what a cache holds is known only where the driver runs


def size_text(n_bytes: int | None) -> str:
    """``1.5 GB``, ``200 MB``, ``0 B``; a dash when unknown."""
    return UNKNOWN if n_bytes is None else format_size(n_bytes)


class WorkerCachePanel(QGroupBox):
    """A table of each live worker's input cache, with a total line for all of them."""

    refreshed = Signal()  # the table shows fresh figures

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__("Worker file cache", parent)
        self.bridge = bridge
        self.table = QTableWidget(0, len(CACHE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(CACHE_COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        row_height = self.table.fontMetrics().height() + 6  # compact: the cell is shared
        self.table.verticalHeader().setDefaultSectionSize(row_height)
        self.table.setMinimumHeight(4 * row_height + 8)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.total = QLabel()
        self.total.setToolTip(
            "Inputs a job linked from its worker's cache instead of downloading them. "
            "What a cache holds shows where this desktop drives the pools."
        )
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.total)
        self._call: asyncio.Task[list[WorkerCache]] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_EVERY_MS)
        self._timer.timeout.connect(self._on_tick)
        self._timer.start()
        bridge.batch_finished.connect(self._on_batch_finished)

    def rows(self) -> list[list[str]]:
        """What the table shows, row by row, as text."""
        shown = []
        for row in range(self.table.rowCount()):
            items = (self.table.item(row, c) for c in range(self.table.columnCount()))
            shown.append([item.text() if item is not None else "" for item in items])
        return shown

    def refresh(self) -> None:
        """Ask the engine for fresh figures (the timer does it every few seconds)."""
        if self._call is not None and not self._call.done():
            return  # one call at a time
        self._call = self.bridge.call(self.bridge.service.worker_caches(), self.show_caches)

    def show_caches(self, caches: list[WorkerCache]) -> None:
        """Fill the table with these figures."""
        self.table.setRowCount(len(caches))
        for row, cache in enumerate(caches):
            cells = (
                cache.pool,
                cache.worker,
                size_text(cache.cached_bytes),
                UNKNOWN if cache.entries is None else str(cache.entries),
                str(cache.hits),
                size_text(cache.bytes_saved),
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column >= 2:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.table.setItem(row, column, item)
        hits = sum(c.hits for c in caches)
        saved = sum(c.bytes_saved for c in caches)
        self.total.setText(
            f"{hits} cache hit{'s' if hits != 1 else ''}, {size_text(saved)} not downloaded "
            f"on {len(caches)} live worker{'s' if len(caches) != 1 else ''}"
        )
        self.refreshed.emit()

    # -- Qt ---------------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    # -- private ----------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        if self.isVisible():
            self.refresh()

    def _on_batch_finished(self, _event: object) -> None:
        if self.isVisible():
            self.refresh()
