"""One batch: a header with its progress, its jobs paged on demand, the selected job in detail."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.engine.events import BatchChanged, JobsChanged
from app.engine.service import BatchRow
from app.views import style
from app.views.batches_model import n_ran, progress_text
from app.views.bridge import EngineBridge
from app.views.job_detail import JobDetailPanel
from app.views.jobs_model import COL_NAME, COLUMNS, JobTableModel
from app.views.timeline import TimelineWindow

REFRESH_DELAY_MS = 500  # bursts of events coalesce into one refresh: at most 2 a second
POLL_EVERY_MS = 2000  # while the batch runs, for changes made by other processes
ALL_STATES = "All"
COLUMN_WIDTHS = (70, 220, 90, 70, 70, 90, 90, 160)


class BatchPanel(QWidget):
    """The jobs of one batch with a state filter; a selected job shows in `detail` below."""

    job_selected = Signal(int)  # job id

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.batch_id: int | None = None
        self.batch: BatchRow | None = None  # the header's last answer

        self.header = QLabel("No batch selected")
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setTextVisible(True)
        self.state_filter = QComboBox()
        self.state_filter.addItems([ALL_STATES, *style.JOB_STATES])
        self.state_filter.setToolTip("Show only the jobs in this state")
        self.state_filter.currentIndexChanged.connect(self._on_filter_changed)
        self.timeline_button = QPushButton("Timeline")
        self.timeline_button.setToolTip("Each attempt on its worker over time, live")
        self.timeline_button.setEnabled(False)
        self.timeline_button.clicked.connect(self.open_timeline)
        self.timelines: list[TimelineWindow] = []

        self.model = JobTableModel(bridge, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self._setup_table()
        self.detail = JobDetailPanel(bridge)

        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.progress)
        top.addWidget(QLabel("Jobs:"))
        top.addWidget(self.state_filter)
        top.addWidget(self.timeline_button)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

        self._header_in_flight = False
        self._generation = 0
        self._pending_select: int | None = None
        self.model.rowsInserted.connect(self._place_pending)
        self.model.dataChanged.connect(self._place_pending)
        self._current_pending: int | None = None  # a current row whose page is loading
        self.model.dataChanged.connect(self._place_current)
        self.model.rowsInserted.connect(self._place_current)
        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_DELAY_MS)
        self._refresh_timer.timeout.connect(self.refresh)
        self._poll_timer = QTimer(self, interval=POLL_EVERY_MS)
        self._poll_timer.timeout.connect(self._on_poll)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_row)
        self._connected = False
        self._connect_bridge(True)

    def _setup_table(self) -> None:
        table = self.table
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setWordWrap(False)
        table.setAlternatingRowColors(True)
        table.setSortingEnabled(False)  # the engine pages in job id order
        rows = table.verticalHeader()
        rows.setVisible(False)
        # fixed heights: Qt never measures the rows of a 100,000-job batch
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(table.fontMetrics().height() + 6)
        columns = table.horizontalHeader()
        columns.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        columns.setStretchLastSection(True)
        for column, width in enumerate(COLUMN_WIDTHS[: len(COLUMNS)]):
            table.setColumnWidth(column, width)

    # -- public ---------------------------------------------------------------------------------

    def show_batch(self, batch_id: int) -> None:
        """Show a batch's jobs (all states) and no job detail."""
        self._generation += 1
        self._header_in_flight = False
        self.batch_id, self.batch = batch_id, None
        self.header.setText(f"<b>Batch {batch_id}</b> · loading…")
        self.progress.reset()
        self.state_filter.blockSignals(True)
        self.state_filter.setCurrentIndex(0)
        self.state_filter.blockSignals(False)
        self.detail.clear()
        self._pending_select = None
        self.model.set_batch(batch_id)
        self._fetch_header()
        self._poll_timer.start()
        self.timeline_button.setEnabled(True)

    def clear(self) -> None:
        """Show no batch (the one shown was deleted)."""
        self._generation += 1
        self._poll_timer.stop()
        self.batch_id, self.batch = None, None
        self.header.setText("No batch open: double-click one in the list above")
        self.progress.reset()
        self.detail.clear()
        self._pending_select = None
        self.model.set_batch(None)
        self.timeline_button.setEnabled(False)

    def open_timeline(self) -> TimelineWindow | None:
        """Open the shown batch's timeline in a window of its own."""
        if self.batch_id is None:
            return None
        window = TimelineWindow(self.bridge, self.batch_id)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.timelines.append(window)
        window.destroyed.connect(lambda: self.timelines.remove(window))
        window.show()
        return window

    def select_job(self, job_id: int) -> None:
        """Show a job's detail and select its row when the table can place it."""
        if self.batch_id is None:
            return
        self.detail.show_job(self.batch_id, job_id)
        self._pending_select = job_id
        self._place_pending()

    def _place_pending(self, *_: object) -> None:
        """Select the row of the job `select_job` asked for, once the table can place it."""
        job_id = self._pending_select
        if job_id is None:
            return
        row = self.model.row_of(job_id)
        if row is None and self.model.state is None and 0 < job_id <= self.model.count:
            row = job_id - 1  # a batch's job ids run 1..n in the order the table shows
        if row is not None:
            self._pending_select = None
            index = self.model.index(row, COL_NAME)
            self.table.selectionModel().setCurrentIndex(
                index,
                QItemSelectionModel.SelectionFlag.ClearAndSelect
                | QItemSelectionModel.SelectionFlag.Rows,
            )
            self.table.scrollTo(index)

    def request_refresh(self) -> None:
        """Refresh soon; a burst of requests makes one refresh."""
        if self.batch_id is not None and not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def refresh(self) -> None:
        """Ask again for the header, the job count and the pages on screen."""
        if self.batch_id is None:
            return
        self._fetch_header()
        first, last = self.visible_rows()
        self.model.refresh(first, last)

    def visible_rows(self) -> tuple[int, int]:
        """The first and last rows on screen (last < first when none shows)."""
        n = self.model.rowCount()
        if n == 0:
            return 0, -1
        first = self.table.rowAt(0)
        if first < 0:
            return 0, -1
        last = self.table.rowAt(self.table.viewport().height() - 1)
        return first, n - 1 if last < 0 else last

    # -- header ---------------------------------------------------------------------------------

    def _fetch_header(self) -> None:
        if self._header_in_flight or self.batch_id is None:
            return
        self._header_in_flight = True
        generation = self._generation
        self.bridge.call(
            self.bridge.service.batch(self.batch_id),
            lambda row: self._on_header(generation, row),
            on_error=lambda exc: self._on_header_error(generation, exc),
        )

    def _on_header(self, generation: int, row: BatchRow) -> None:
        if generation != self._generation or not shiboken6.isValid(self):
            return
        self._header_in_flight = False
        self.batch = row
        b = row.batch
        color = style.STATE_COLORS.get(b.state, "#9e9e9e")
        name = b.name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        failed = f"<span style='color:{style.STATE_COLORS['Failed']}'>{b.n_failed} failed</span>"
        self.header.setText(
            f"<b>Batch {b.id} — {name}</b> · {b.user} · "
            f"<span style='color:{color}'><b>{b.state}</b></span> · "
            f"{n_ran(b)}/{b.n_jobs} done · "
            + (failed if b.n_failed else "0 failed")
            + (f" · {b.n_cancelled} cancelled" if b.n_cancelled else "")
            + f" · {style.duration(b.duration_s)} · {style.usd(row.cost_usd)}"
        )
        self.progress.setRange(0, max(1, b.n_jobs))
        self.progress.setValue(n_ran(b))
        self.progress.setFormat(progress_text(b))
        if b.complete:
            self._poll_timer.stop()
        elif not self._poll_timer.isActive():
            self._poll_timer.start()

    def _on_header_error(self, generation: int, exc: Exception) -> None:
        if generation != self._generation or not shiboken6.isValid(self):
            return
        self._header_in_flight = False
        self._poll_timer.stop()
        self.header.setText(f"<b>Batch {self.batch_id}</b> · {exc}")

    # -- events ---------------------------------------------------------------------------------

    def _on_batch_changed(self, event: BatchChanged) -> None:
        if event.batch_id == self.batch_id:
            self.request_refresh()

    def _on_jobs_changed(self, event: JobsChanged) -> None:
        if event.batch_id == self.batch_id:
            self.request_refresh()

    def _on_poll(self) -> None:
        if self.isVisible() and (self.batch is None or not self.batch.batch.complete):
            self.request_refresh()

    def _on_filter_changed(self, index: int) -> None:
        if self.batch_id is None:
            return
        state = None if index <= 0 else self.state_filter.itemText(index)
        self._pending_select = None
        self.model.set_batch(self.batch_id, state=state)

    def _on_current_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid() or self.batch_id is None:
            return
        row = self.model.job_at(current.row())
        if row is not None:
            self._show_detail(row.job.job_id)
        elif self.model.state is None:  # unfiltered, a batch's job ids run 1..n as shown
            self._show_detail(current.row() + 1)
        else:  # its page is loading (Ctrl+End, a jump): show it when it arrives
            self._current_pending = current.row()

    def _show_detail(self, job_id: int) -> None:
        self._current_pending = None
        if self.detail.job_id != job_id and self.batch_id is not None:
            self.detail.show_job(self.batch_id, job_id)
        self.job_selected.emit(job_id)

    def _place_current(self, *_: object) -> None:
        """The current row's page arrived: show its job."""
        if self._current_pending is None:
            return
        current = self.table.currentIndex()
        if not current.isValid() or current.row() != self._current_pending:
            self._current_pending = None
            return
        row = self.model.job_at(current.row())
        if row is not None:
            self._show_detail(row.job.job_id)

    def _connect_bridge(self, connect: bool) -> None:
        if connect == self._connected:
            return
        self._connected = connect
        for signal, slot in (
            (self.bridge.batch_changed, self._on_batch_changed),
            (self.bridge.jobs_changed, self._on_jobs_changed),
            (self.bridge.batches_changed, self.request_refresh),
        ):
            if connect:
                signal.connect(slot)
            else:
                signal.disconnect(slot)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._connect_bridge(True)  # again, if it was closed and is shown anew
        if self.batch_id is not None and (self.batch is None or not self.batch.batch.complete):
            self.request_refresh()
            self._poll_timer.start()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._poll_timer.stop()
        self._refresh_timer.stop()
        self.detail.stop()
        self._connect_bridge(False)  # the bridge outlives this panel
        super().closeEvent(event)
