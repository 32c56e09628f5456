"""The jobs of one DAG node in a watched batch: how they stand (the state a node is coloured
by, a scatter node's progress) and a window listing them with the selected one in detail."""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import JobInfo, JobRow
from app.views import style
from app.views.bridge import EngineBridge
from app.views.job_detail import JobDetailPanel
from app.views.style import JOB_STATES

JOB_COLUMNS = ("Job", "Name", "State", "Exit code", "Attempts")
COL_STATE = 2
MAX_NODE_ROWS = 5000  # a huge scatter node lists its first jobs only
FAILED_STATES = frozenset({"Failed", "Error"})
RUNNING_STATES = frozenset({"Running", "Creating"})


def node_state(counts: Mapping[str, int]) -> str | None:
    """The one state a node is coloured by, from how many of its jobs are in each state.

    The first that applies: Running (any job running or being created), Failed (any failed),
    Error (any errored), Ready (any ready), Pending (any pending), Success (all succeeded),
    else Cancelled (all ended, some cancelled). None for a node without jobs.
    """
    present = {state for state, n in counts.items() if n}
    if not present:
        return None
    if present & RUNNING_STATES:
        return "Running"
    for state in ("Failed", "Error", "Ready", "Pending"):
        if state in present:
            return state
    return "Success" if present == {"Success"} else "Cancelled"


def progress_text(counts: Mapping[str, int]) -> str:
    """A scatter node's progress, e.g. '37/100 done, 2 failed' (short: it fits in the node;
    the tooltip has every count)."""
    total = sum(counts.values())
    failed = sum(counts.get(s, 0) for s in FAILED_STATES)
    cancelled = counts.get("Cancelled", 0)
    parts = [f"{counts.get('Success', 0)}/{total} done"]
    parts += [f"{failed} failed"] if failed else []
    parts += [f"{cancelled} cancelled"] if cancelled else []
    return ", ".join(parts)


def counts_text(counts: Mapping[str, int]) -> str:
    """How many jobs are in each state, e.g. '2 Success, 1 Running'."""
    return ", ".join(f"{counts[s]} {s}" for s in JOB_STATES if counts.get(s))


class NodeJobsDialog(QDialog):
    """A node's jobs (name, state, exit code, attempts) and the selected job's attempts and log.

    The jobs are read as one page of the batch's jobs in id order: `offset` is the position
    of the node's first job among the batch's jobs and `limit` spans its last one.
    """

    def __init__(
        self,
        bridge: EngineBridge,
        batch_id: int,
        node_name: str,
        job_ids: list[int],
        *,
        offset: int,
        limit: int,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.batch_id = batch_id
        self.node_name = node_name
        self.node_job_ids = frozenset(job_ids)
        self.jobs: list[JobInfo] = []  # the rows shown, in id order
        self._offset, self._limit = offset, min(limit, MAX_NODE_ROWS)
        self._in_flight = False
        self._chosen = False  # a job was selected for the user once

        self.setWindowTitle(f"Jobs of {node_name} — batch {batch_id}")
        self.setModal(False)
        self.summary = QLabel("loading…")
        self.table = QTableWidget(0, len(JOB_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(JOB_COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.currentCellChanged.connect(self._on_current_cell_changed)
        self.detail = JobDetailPanel(bridge)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        splitter.setSizes([200, 400])
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(splitter)
        self.resize(900, 640)
        self.refresh()

    @property
    def job_ids(self) -> list[int]:
        """The jobs listed, in id order."""
        return [job.job_id for job in self.jobs]

    def refresh(self) -> None:
        """Read the node's jobs again (one read at a time)."""
        if self._in_flight:
            return
        self._in_flight = True
        self.bridge.call(
            self.bridge.service.job_page(self.batch_id, offset=self._offset, limit=self._limit),
            self._on_rows,
            on_error=self._on_error,
        )

    def select_job(self, job_id: int) -> None:
        """Show a listed job in detail."""
        if job_id in self.job_ids:
            self.table.selectRow(self.job_ids.index(job_id))

    def _on_rows(self, rows: list[JobRow]) -> None:
        self._in_flight = False
        self.jobs = [row.job for row in rows if row.job.job_id in self.node_job_ids]
        table = self.table
        table.setRowCount(len(self.jobs))
        for row, job in enumerate(self.jobs):
            values = (
                str(job.job_id),
                job.name,
                job.state,
                "" if job.exit_code is None else str(job.exit_code),
                str(job.n_attempts),
            )
            for column, value in enumerate(values):
                item = table.item(row, column)
                if item is None:
                    item = QTableWidgetItem(value)
                    table.setItem(row, column, item)
                elif item.text() != value:
                    item.setText(value)
            table.item(row, COL_STATE).setForeground(style.state_color(job.state))
        shown = len(self.jobs)
        more = len(self.node_job_ids) - shown
        self.summary.setText(
            f"{shown} job{'s' if shown != 1 else ''} of {self.node_name}"
            + (f" (the first {shown}; {more} more not listed)" if more > 0 else "")
        )
        if not self._chosen and self.jobs:
            self._chosen = True
            failed = [job.job_id for job in self.jobs if job.state in FAILED_STATES]
            self.select_job(failed[0] if failed else self.jobs[0].job_id)

    def _on_error(self, exc: Exception) -> None:
        self._in_flight = False
        self.summary.setText(str(exc))  # the batch is gone: say so here, not in a dialog

    def _on_current_cell_changed(self, row: int, _column: int, _row: int, _col: int) -> None:
        if 0 <= row < len(self.jobs):
            self.detail.show_job(self.batch_id, self.jobs[row].job_id)

    def done(self, result: int) -> None:
        self.detail.stop()
        super().done(result)
