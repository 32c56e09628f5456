"""The batches list: the user's batches with filters, and open / cancel / retry / delete.

Rows come from `EngineService.find_batches`. The list refreshes on the bridge's batch signals
(throttled) and every 2 s while visible, for batches changed by other processes; it keeps the
selected batch and the scroll position across refreshes.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import shiboken6
from PySide6.QtCore import QModelIndex, QPoint, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QStackedWidget,
    QTableView,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import BatchFilter, BatchRow
from app.views import style
from app.views.batches_model import (
    BATCH_ID_ROLE,
    COL_COST,
    COL_CREATED,
    COL_ID,
    COL_NAME,
    COL_PROGRESS,
    SORT_ROLE,
    BatchTableModel,
    ProgressDelegate,
)
from app.views.bridge import EngineBridge
from app.views.live_panel import LivePanel

ALL_STATES = "All"
POLL_EVERY_MS = 2000  # changes made by other processes
THROTTLE_MS = 500  # at most two refreshes a second on bursts of signals
TYPING_PAUSE_MS = 300  # the search applies once typing pauses
TICK_EVERY_MS = 1000  # running batches' durations count up
EMPTY_TEXT = "No batches yet — File ▸ Submit DAG… or drop a YAML file here"
NO_MATCH_TEXT = "No batches match these filters"
CANCEL_TEXT = (
    "Cancel batch {id} '{name}'?\n\n"
    "Its running jobs are stopped; jobs that have not started end Cancelled."
)
DELETE_TEXT = (
    "Delete batch {id} '{name}'? Its logs are removed; its cost stays in the spend figures."
)
DELETE_RUNNING_TEXT = "\n\nIt is still running: it is cancelled first."


def ask_confirm(parent: QWidget, title: str, text: str) -> bool:
    """A Yes / Cancel question; True on Yes."""
    answer = QMessageBox.question(
        parent,
        title,
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    return answer == QMessageBox.StandardButton.Yes


class BatchesPanel(LivePanel):
    """A table of batches with a filter bar, a toolbar and a context menu of batch actions."""

    batch_opened = Signal(int)  # the user opened a batch (Enter, double-click, Open)
    batch_deleted = Signal(int)  # this panel deleted a batch
    refreshed = Signal()  # fresh rows from the engine are on screen

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        # (parent, title, text) -> True to go ahead; tests replace it
        self.confirm: Callable[[QWidget, str, str], bool] = ask_confirm
        self.model = BatchTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setDynamicSortFilter(True)
        self.table = QTableView()
        self.state_filter = QComboBox()
        self.search = QLineEdit()
        self.all_users = QCheckBox("All users")
        self.user_filter = QLineEdit()
        self.status = QLabel()
        self.empty_hint = QLabel(EMPTY_TEXT)
        self.toolbar = QToolBar("Batch actions")
        self.context_menu = QMenu(self)
        self.open_action = self._action("&Open", "Show the batch's jobs", self.open_selected)
        self.cancel_action = self._action(
            "&Cancel…", "Cancel the running batch", self.cancel_selected
        )
        self.retry_action = self._action(
            "&Retry failed",
            "Run the failed jobs and the jobs they held back again",
            self.retry_selected,
        )
        self.delete_action = self._action("&Delete…", "Delete the batch", self.delete_selected)
        self.open_action.setShortcuts(
            [QKeySequence(Qt.Key.Key_Return), QKeySequence(Qt.Key.Key_Enter)]
        )
        self.cancel_action.setShortcut(QKeySequence("Ctrl+K"))
        self.retry_action.setShortcut(QKeySequence("Ctrl+Shift+R"))
        self.delete_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        for action in (self.open_action, self.cancel_action, self.retry_action, self.delete_action):
            key = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            action.setToolTip(f"{action.toolTip()} ({key})")

        self._load_task: Any = None
        self._loading: BatchFilter | None = None  # the filter of the fetch in flight
        self._again = False
        self._loaded = False
        self._message = ""  # the outcome of the last action
        self._build()

        self._throttle = self.timer(THROTTLE_MS, self.refresh, single_shot=True)
        self._typing = self.timer(TYPING_PAUSE_MS, self.refresh, single_shot=True)
        self.timer(POLL_EVERY_MS, self.refresh, polls=True)
        self.timer(TICK_EVERY_MS, self.model.tick, polls=True)

        self.state_filter.currentIndexChanged.connect(self._on_state_chosen)
        self.search.textChanged.connect(self._on_typed)
        self.user_filter.textChanged.connect(self._on_typed)
        self.all_users.toggled.connect(self._on_all_users)
        self.table.doubleClicked.connect(self._on_double_clicked)
        self.table.customContextMenuRequested.connect(self._on_context_menu)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.link()
        self.update_actions()
        self.refresh()

    # -- public -----------------------------------------------------------------------------------

    def current_filter(self) -> BatchFilter:
        """The filter the bar shows: state, search text and user."""
        state = self.state_filter.currentData()
        if self.all_users.isChecked():
            user = self.user_filter.text().strip() or None
        else:
            user = self.bridge.service.user
        return BatchFilter(user=user, state=state, text=self.search.text().strip())

    def selected_batch(self) -> BatchRow | None:
        """The selected batch as last fetched."""
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        source = self.proxy.mapToSource(rows[0])
        return self.model.batch_row(source.row()) if source.isValid() else None

    @property
    def selected_batch_id(self) -> int | None:
        row = self.selected_batch()
        return row.batch.id if row is not None else None

    def select_batch(self, batch_id: int) -> bool:
        """Select a listed batch's row; False when it is not listed."""
        row = self.model.row_of(batch_id)
        if row is None:
            return False
        index = self.proxy.mapFromSource(self.model.index(row, COL_ID))
        flags = (
            self.table.selectionModel().SelectionFlag.ClearAndSelect
            | self.table.selectionModel().SelectionFlag.Rows
        )
        self.table.selectionModel().setCurrentIndex(index, flags)
        return True

    def refresh(self) -> None:
        """Fetch the batches now, or right after the fetch in flight."""
        if self._load_task is not None and not self._load_task.done():
            self._again = True
            return
        self._loading = self.current_filter()
        self._load_task = self.bridge.call(
            self.bridge.service.find_batches(self._loading),
            self._on_batches,
            on_error=self._on_load_error,
        )

    def update_actions(self) -> None:
        """Enable the actions that make sense for the selected batch."""
        row = self.selected_batch()
        batch = row.batch if row is not None else None
        own = batch is not None and batch.user == self.bridge.service.user
        self.open_action.setEnabled(batch is not None)
        self.cancel_action.setEnabled(own and batch is not None and not batch.complete)
        self.retry_action.setEnabled(
            own and batch is not None and batch.complete and batch.n_failed + batch.n_cancelled > 0
        )
        self.delete_action.setEnabled(own)

    def open_selected(self) -> None:
        """Tell the window to show the selected batch's jobs."""
        batch_id = self.selected_batch_id
        if batch_id is not None:
            self.batch_opened.emit(batch_id)

    def cancel_selected(self) -> None:
        """Cancel the selected batch, after asking while it is running."""
        row = self.selected_batch()
        if row is None:
            return
        batch = row.batch
        text = CANCEL_TEXT.format(id=batch.id, name=batch.name)
        if not batch.complete and not self.confirm(self, "Cancel batch", text):
            return
        self._run(
            self.bridge.service.cancel_batch(batch.id), lambda _: f"Batch {batch.id} cancelled"
        )

    def retry_selected(self) -> None:
        """Run the selected batch's failed jobs (and the jobs they held back) again."""
        row = self.selected_batch()
        if row is None:
            return
        batch_id = row.batch.id
        self._run(
            self.bridge.service.retry_batch(batch_id, failed_only=True),
            lambda n: f"Batch {batch_id}: {n} job{'' if n == 1 else 's'} run again",
        )

    def delete_selected(self) -> None:
        """Delete the selected batch after asking."""
        row = self.selected_batch()
        if row is None:
            return
        batch = row.batch
        text = DELETE_TEXT.format(id=batch.id, name=batch.name)
        if not batch.complete:
            text += DELETE_RUNNING_TEXT
        if not self.confirm(self, "Delete batch", text):
            return

        def deleted(_: object) -> str:
            self.batch_deleted.emit(batch.id)
            return f"Batch {batch.id} deleted"

        self._run(self.bridge.service.delete_batch(batch.id), deleted)

    # -- Qt ---------------------------------------------------------------------------------------

    # -- building ---------------------------------------------------------------------------------

    def _action(self, text: str, tip: str, slot: Callable[[], None]) -> QAction:
        action = QAction(text, self)
        action.setStatusTip(tip)
        action.setToolTip(tip)
        action.triggered.connect(slot)
        # the shortcuts act on the table only, so Delete still edits the search field
        action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        return action

    def _build(self) -> None:
        self.state_filter.addItem(ALL_STATES, None)
        for state in style.BATCH_STATES:
            self.state_filter.addItem(state, state)
        self.state_filter.setToolTip("Show batches in this state")
        self.search.setPlaceholderText("Search names, or key=value of an attribute")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Part of a batch's name, or key=value to match an attribute")
        self.all_users.setToolTip(
            f"Show every user's batches, not only {self.bridge.service.user}'s"
        )
        self.user_filter.setPlaceholderText("any user")
        self.user_filter.setToolTip("Show only this user's batches (empty: every user)")
        self.user_filter.setClearButtonEnabled(True)
        self.user_filter.setVisible(False)
        bar = QHBoxLayout()
        bar.addWidget(self.state_filter)
        bar.addWidget(self.search, 3)
        bar.addWidget(self.all_users)
        bar.addWidget(self.user_filter, 1)

        table = self.table
        table.setModel(self.proxy)
        table.setItemDelegateForColumn(COL_PROGRESS, ProgressDelegate(table))
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSortingEnabled(True)
        table.sortByColumn(COL_ID, Qt.SortOrder.DescendingOrder)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.verticalHeader().setVisible(False)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(COL_PROGRESS, 120)
        header.resizeSection(COL_COST, 90)  # "<$0.0001" and "$1,234.56" fit
        header.resizeSection(COL_CREATED, 130)
        table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

        actions = (self.open_action, self.cancel_action, self.retry_action, self.delete_action)
        for action in actions:
            table.addAction(action)  # their shortcuts work while the table has focus
            self.toolbar.addAction(action)
            self.context_menu.addAction(action)
        self.context_menu.insertSeparator(self.cancel_action)
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        top = QHBoxLayout()
        top.addWidget(self.toolbar)
        top.addStretch(1)
        top.addWidget(self.status)

        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setEnabled(False)  # drawn greyed, as a hint
        self._stack = QStackedWidget()
        self._stack.addWidget(table)
        self._stack.addWidget(self.empty_hint)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addLayout(top)
        layout.addWidget(self._stack, 1)

    def links(self) -> list[tuple[Any, Callable[..., None]]]:
        b = self.bridge
        signals = (b.batch_changed, b.batch_finished, b.batches_changed)
        return [(signal, self._schedule_refresh) for signal in signals]

    # -- engine results ---------------------------------------------------------------------------

    def _schedule_refresh(self, *_: object) -> None:
        if self.isVisible() and not self._throttle.isActive():
            self._throttle.start()

    def _on_batches(self, rows: list[BatchRow]) -> None:
        stale = self._loading != self.current_filter()  # the filter changed meanwhile
        if not stale:
            self._show(rows)
        if stale or self._again:
            self._again = False
            self.refresh()

    def _on_load_error(self, exc: Exception) -> None:
        self.bridge.user_error.emit(str(exc))
        if self._again:
            self._again = False
            self.refresh()

    def _show(self, rows: list[BatchRow]) -> None:
        selected = self.selected_batch_id
        scroll = self.table.verticalScrollBar().value()
        first = not self._loaded
        if self.model.set_rows(rows):
            if selected is not None:
                self.select_batch(selected)
            self.table.doItemsLayout()  # the scroll range follows the new rows now
            self.table.verticalScrollBar().setValue(scroll)
            if first and rows:
                self.table.resizeColumnsToContents()
                header = self.table.horizontalHeader()
                for column, least in ((COL_COST, 90), (COL_PROGRESS, 120), (COL_CREATED, 130)):
                    # costs and durations grow after the first look: leave them room
                    header.resizeSection(column, max(header.sectionSize(column), least))
        self._loaded = self._loaded or bool(rows)
        where = self.current_filter()
        filtered = bool(where.state or where.text or (self.all_users.isChecked() and where.user))
        self.empty_hint.setText(NO_MATCH_TEXT if filtered else EMPTY_TEXT)
        self._stack.setCurrentWidget(self.empty_hint if not rows else self.table)
        n = len(rows)
        count = f"{n} batch{'' if n == 1 else 'es'}"
        self.status.setText(f"{self._message} · {count}" if self._message else count)
        self.update_actions()
        self.refreshed.emit()

    # -- actions ----------------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, Any], done: Callable[[Any], str]) -> None:
        """Run a batch action; show ``done(result)`` and refresh every list when it succeeds."""

        def finished(result: object) -> None:
            if shiboken6.isValid(self):  # the panel may have closed meanwhile
                self._message = done(result)
                self.bridge.batches_changed.emit()
                self.refresh()

        self.bridge.call(coro, finished)

    # -- user input -------------------------------------------------------------------------------

    def _on_state_chosen(self, _index: int) -> None:
        self.refresh()

    def _on_typed(self, _text: str) -> None:
        self._typing.start()  # (re)start: the search applies once typing pauses

    def _on_selection_changed(self, *_: object) -> None:
        self.update_actions()

    def _on_all_users(self, checked: bool) -> None:
        self.user_filter.setVisible(checked)
        self.refresh()

    def _on_double_clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            self.open_selected()

    def _on_context_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if index.isValid():
            batch_id = index.data(BATCH_ID_ROLE)
            if batch_id is not None:
                self.select_batch(int(batch_id))
        self.context_menu.popup(self.table.viewport().mapToGlobal(pos))
