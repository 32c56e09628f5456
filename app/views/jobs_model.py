"""A batch's jobs as a table model that loads pages on demand and keeps a bounded LRU of them.

`rowCount` is the job count (asked once per batch or filter, and again on refresh); `data` for a
row whose page is not loaded shows a placeholder and asks the engine for that one page. A
100,000-job batch thus opens with one count and one page, and scrolling fetches only what shows.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import shiboken6
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QFont

from app.engine.service import JobRow
from app.views import style
from app.views.bridge import EngineBridge

PAGE_SIZE = 256
MAX_PAGES = 50  # at most ~12,800 rows held, however large the batch
PLACEHOLDER = "…"
COLUMNS = ("ID", "Name", "State", "Exit code", "Attempts", "Duration", "Cost", "Worker")
(COL_ID, COL_NAME, COL_STATE, COL_EXIT, COL_ATTEMPTS, COL_DURATION, COL_COST, COL_WORKER) = range(
    len(COLUMNS)
)
_RIGHT = (COL_ID, COL_EXIT, COL_ATTEMPTS, COL_DURATION, COL_COST)
JOB_ID_ROLE = Qt.ItemDataRole.UserRole

AnyIndex = QModelIndex | QPersistentModelIndex


class JobTableModel(QAbstractTableModel):
    """The jobs of one batch (optionally of one state), paged on demand from the engine."""

    def __init__(self, bridge: EngineBridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.batch_id: int | None = None
        self.state: str | None = None
        self.n_page_fetches = 0  # pages asked of the engine since the batch or filter was set
        self._count = 0
        self._pages: OrderedDict[int, list[JobRow]] = OrderedDict()
        self._stale: set[int] = set()  # cached pages to fetch again when next shown
        self._in_flight: set[int] = set()
        self._count_in_flight = False
        self._generation = 0  # results of an older batch or filter are dropped
        self._bold = QFont()
        self._bold.setBold(True)

    # -- what the panel and tests use -----------------------------------------------------------

    def set_batch(self, batch_id: int | None, *, state: str | None = None) -> None:
        """Show another batch or filter: forget every page and ask for the count."""
        self.beginResetModel()
        self._generation += 1
        self.batch_id, self.state = batch_id, state
        self._count = 0
        self._pages.clear()
        self._stale.clear()
        self._in_flight.clear()
        self._count_in_flight = False
        self.n_page_fetches = 0
        self.endResetModel()
        if batch_id is not None:
            self._fetch_count()

    def refresh(self, first_row: int = 0, last_row: int = -1) -> None:
        """Ask again for the count and for the cached pages in ``first_row..last_row``.

        Other cached pages keep showing their rows but are fetched again when next shown.
        """
        if self.batch_id is None:
            return
        self._fetch_count()
        visible = set(range(first_row // PAGE_SIZE, last_row // PAGE_SIZE + 1))
        for page in self._pages:
            self._stale.add(page)
            if page in visible:
                self._fetch_page(page)

    @property
    def count(self) -> int:
        return self._count

    @property
    def n_loaded_rows(self) -> int:
        """How many jobs the model holds now (bounded by MAX_PAGES pages)."""
        return sum(len(rows) for rows in self._pages.values())

    @property
    def n_loaded_pages(self) -> int:
        return len(self._pages)

    @property
    def busy(self) -> bool:
        """True while a count or a page is being fetched."""
        return self._count_in_flight or bool(self._in_flight)

    def job_at(self, row: int) -> JobRow | None:
        """The job shown on ``row``, if its page is loaded (no fetch is started)."""
        rows = self._pages.get(row // PAGE_SIZE)
        offset = row % PAGE_SIZE
        return rows[offset] if rows is not None and offset < len(rows) else None

    def row_of(self, job_id: int) -> int | None:
        """The row of a job among the loaded pages, if it is loaded."""
        for page, rows in self._pages.items():
            for i, job_row in enumerate(rows):
                if job_row.job.job_id == job_id:
                    return page * PAGE_SIZE + i
        return None

    # -- Qt model -------------------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self._count

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < self._count:
            return None
        page = index.row() // PAGE_SIZE
        rows = self._pages.get(page)
        if rows is None or page in self._stale:
            self._fetch_page(page)
        if rows is None:
            return PLACEHOLDER if role == Qt.ItemDataRole.DisplayRole else None
        self._pages.move_to_end(page)
        offset = index.row() % PAGE_SIZE
        if offset >= len(rows):  # the count grew past what this page held
            return PLACEHOLDER if role == Qt.ItemDataRole.DisplayRole else None
        return self._cell(rows[offset], index.column(), role)

    def _cell(self, row: JobRow, column: int, role: int) -> Any:
        job = row.job
        if role == Qt.ItemDataRole.DisplayRole:
            return _display(row, column)
        if role == JOB_ID_ROLE:
            return job.job_id
        if column == COL_STATE:
            if role == Qt.ItemDataRole.ForegroundRole:
                return style.state_color(str(job.state))
            if role == Qt.ItemDataRole.FontRole:
                return self._bold
            if role == Qt.ItemDataRole.ToolTipRole and job.error:
                return job.error
        if role == Qt.ItemDataRole.TextAlignmentRole and column in _RIGHT:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # -- fetching -------------------------------------------------------------------------------

    def _fetch_count(self) -> None:
        if self._count_in_flight or self.batch_id is None:
            return
        self._count_in_flight = True
        generation = self._generation
        self.bridge.call(
            self.bridge.service.count_jobs(self.batch_id, state=self.state),
            lambda n: self._on_count(generation, n),
            on_error=lambda exc: self._on_count_error(generation, exc),
        )

    def _on_count(self, generation: int, n: int) -> None:
        if generation != self._generation or not shiboken6.isValid(self):
            return
        self._count_in_flight = False
        if n > self._count:
            self.beginInsertRows(QModelIndex(), self._count, n - 1)
            self._count = n
            self.endInsertRows()
        elif n < self._count:
            self.beginRemoveRows(QModelIndex(), n, self._count - 1)
            self._count = n
            last_page = (n - 1) // PAGE_SIZE if n else -1
            for page in [p for p in self._pages if p > last_page]:
                del self._pages[page]
                self._stale.discard(page)
            self.endRemoveRows()

    def _on_count_error(self, generation: int, exc: Exception) -> None:
        if generation == self._generation and shiboken6.isValid(self):
            self._count_in_flight = False
            self.bridge.user_error.emit(str(exc))

    def _fetch_page(self, page: int) -> None:
        if page in self._in_flight or self.batch_id is None:
            return
        self._in_flight.add(page)
        self.n_page_fetches += 1
        generation = self._generation
        self.bridge.call(
            self.bridge.service.job_page(
                self.batch_id, offset=page * PAGE_SIZE, limit=PAGE_SIZE, state=self.state
            ),
            lambda rows: self._on_page(generation, page, rows),
            on_error=lambda exc: self._on_page_error(generation, page, exc),
        )

    def _on_page(self, generation: int, page: int, rows: list[JobRow]) -> None:
        if generation != self._generation or not shiboken6.isValid(self):
            return
        self._in_flight.discard(page)
        self._stale.discard(page)
        self._pages[page] = rows
        self._pages.move_to_end(page)
        while len(self._pages) > MAX_PAGES:
            old, _ = self._pages.popitem(last=False)
            self._stale.discard(old)
        first = page * PAGE_SIZE
        last = min(first + PAGE_SIZE, self._count) - 1
        if last >= first:
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))

    def _on_page_error(self, generation: int, page: int, exc: Exception) -> None:
        if generation == self._generation and shiboken6.isValid(self):
            self._in_flight.discard(page)
            self._pages[page] = []  # shown as placeholders until the next refresh asks again
            self.bridge.user_error.emit(str(exc))


def _display(row: JobRow, column: int) -> str:
    job = row.job
    if column == COL_ID:
        return str(job.job_id)
    if column == COL_NAME:
        return job.name
    if column == COL_STATE:
        return str(job.state)
    if column == COL_EXIT:
        return "" if job.exit_code is None else str(job.exit_code)
    if column == COL_ATTEMPTS:
        return str(job.n_attempts)
    if column == COL_DURATION:
        return style.duration(job.duration_s)
    if column == COL_COST:
        return style.usd(row.cost_usd)
    return job.instance_name or ""
