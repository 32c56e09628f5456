"""The batches list as a Qt table model, and the delegate that draws its progress bars.

`set_rows` updates rows in place (dataChanged) while the list of batch ids stays the same and
resets the model only when it changes, so selection, scrolling and sorting survive refreshes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QBrush, QColor, QPainter, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from app.engine.service import BatchInfo, BatchRow
from app.views import style

COLUMNS = ("ID", "Name", "User", "State", "Progress", "Duration", "Cost", "Created")
(
    COL_ID,
    COL_NAME,
    COL_USER,
    COL_STATE,
    COL_PROGRESS,
    COL_DURATION,
    COL_COST,
    COL_CREATED,
) = range(len(COLUMNS))
_RIGHT = (COL_ID, COL_DURATION, COL_COST)
BATCH_ID_ROLE = Qt.ItemDataRole.UserRole
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 2  # (n_ran, n_jobs, state, text)

AnyIndex = QModelIndex | QPersistentModelIndex


def n_ran(batch: BatchInfo) -> int:
    """Jobs that ran to an end: the completed ones, less those a cancel ended (never ran)."""
    return max(0, batch.n_completed - batch.n_cancelled)


def progress_text(batch: BatchInfo) -> str:
    """'37/100' (jobs that ran of all jobs), and how many a cancel ended, if any."""
    text = f"{n_ran(batch)}/{batch.n_jobs}"
    return text + (f" · {batch.n_cancelled} cancelled" if batch.n_cancelled else "")


def progress_tip(batch: BatchInfo) -> str:
    """The counts behind the bar, failures included."""
    return (
        f"{batch.n_completed} of {batch.n_jobs} jobs done: {batch.n_succeeded} succeeded, "
        f"{batch.n_failed} failed, {batch.n_cancelled} cancelled"
    )


def duration_text(batch: BatchInfo) -> str:
    """Whole seconds while running (it counts up); tenths for short finished batches."""
    seconds = batch.duration_s
    if not batch.complete or seconds >= 60:
        return style.duration(int(seconds))
    return style.duration(round(seconds, 1))


def text_color_on(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background``."""
    return QColor("#000000") if background.lightnessF() > 0.6 else QColor("#ffffff")


class BatchTableModel(QAbstractTableModel):
    """Batches as rows, newest first as the engine returns them."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[BatchRow] = []
        self._row_of: dict[int, int] = {}

    # -- what the panel uses ----------------------------------------------------------------------

    @property
    def rows(self) -> list[BatchRow]:
        return list(self._rows)

    def set_rows(self, rows: list[BatchRow]) -> bool:
        """Show these batches; True when the model was reset (the ids changed)."""
        if [r.batch.id for r in rows] != [r.batch.id for r in self._rows]:
            self.beginResetModel()
            self._rows = list(rows)
            self._row_of = {r.batch.id: i for i, r in enumerate(self._rows)}
            self.endResetModel()
            return True
        old, self._rows = self._rows, list(rows)
        last = len(COLUMNS) - 1
        for i, (before, after) in enumerate(zip(old, rows, strict=True)):
            if before != after:
                self.dataChanged.emit(self.index(i, 0), self.index(i, last))
        return False

    def row_of(self, batch_id: int) -> int | None:
        """The source row of a batch, if it is listed."""
        return self._row_of.get(batch_id)

    def batch_row(self, row: int) -> BatchRow:
        return self._rows[row]

    def tick(self) -> None:
        """Running batches keep counting: repaint their duration."""
        for i, row in enumerate(self._rows):
            if not row.batch.complete:
                index = self.index(i, COL_DURATION)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole, SORT_ROLE])

    # -- Qt ---------------------------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        row = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _DISPLAY[column](row)
        if role == SORT_ROLE:
            return _SORT_KEY[column](row)
        if role == BATCH_ID_ROLE:
            return row.batch.id
        if role == PROGRESS_ROLE:
            return (n_ran(row.batch), row.batch.n_jobs, row.batch.state, progress_text(row.batch))
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tooltip(row.batch, column)
        if column == COL_STATE and role == Qt.ItemDataRole.BackgroundRole:
            return QBrush(style.state_color(row.batch.state))
        if column == COL_STATE and role == Qt.ItemDataRole.ForegroundRole:
            return QBrush(text_color_on(style.state_color(row.batch.state)))
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if column in _RIGHT:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if column in (COL_STATE, COL_PROGRESS):
                return int(Qt.AlignmentFlag.AlignCenter)
        return None


# per column: the text shown, and the value sorted on
_DISPLAY: tuple[Callable[[BatchRow], str], ...] = (
    lambda r: str(r.batch.id),
    lambda r: r.batch.name,
    lambda r: r.batch.user,
    lambda r: r.batch.state,
    lambda r: progress_text(r.batch),
    lambda r: duration_text(r.batch),
    lambda r: style.usd(r.cost_usd),
    lambda r: style.clock(r.batch.time_created),
)
_SORT_KEY: tuple[Callable[[BatchRow], Any], ...] = (
    lambda r: r.batch.id,
    lambda r: r.batch.name.lower(),
    lambda r: r.batch.user.lower(),
    lambda r: r.batch.state,
    lambda r: r.batch.n_completed / r.batch.n_jobs if r.batch.n_jobs else 1.0,
    lambda r: r.batch.duration_s,
    lambda r: float(r.cost_usd),
    lambda r: r.batch.time_created,
)


def _tooltip(batch: BatchInfo, column: int) -> str | None:
    if column == COL_PROGRESS:
        return progress_tip(batch)
    if column == COL_NAME and batch.attributes:
        return "\n".join(f"{k}={v}" for k, v in sorted(batch.attributes.items()))
    if column == COL_STATE and batch.cancelled:
        return "cancelled by its user"
    return None


class ProgressDelegate(QStyledItemDelegate):
    """Draws completed / all jobs as a progress bar in the batch's state colour."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: AnyIndex) -> None:
        progress = index.data(PROGRESS_ROLE)
        if not progress:
            super().paint(painter, option, index)
            return
        n_completed, n_jobs, state, text = progress
        widget = option.widget  # type: ignore[attr-defined]
        qstyle = widget.style() if widget is not None else QApplication.style()
        # the cell's own background (selection, alternating rows) first
        item = QStyleOptionViewItem(option)
        self.initStyleOption(item, index)
        item.text = ""  # type: ignore[attr-defined]
        qstyle.drawControl(QStyle.ControlElement.CE_ItemViewItem, item, painter, widget)

        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 2, -2, -2)  # type: ignore[attr-defined]
        bar.state = option.state | QStyle.StateFlag.State_Horizontal  # type: ignore[attr-defined]
        bar.minimum = 0
        bar.maximum = max(1, n_jobs)
        bar.progress = min(n_completed, bar.maximum) if n_jobs else bar.maximum
        bar.text = text
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        palette = QPalette(option.palette)  # type: ignore[attr-defined]
        palette.setColor(QPalette.ColorRole.Highlight, style.state_color(str(state)))
        bar.palette = palette  # type: ignore[attr-defined]
        painter.save()
        qstyle.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, widget)
        painter.restore()
