"""The pools: each pool's live workers, its limits, one-click scaling, and new pools.

Scaling goes through the same engine calls as `labbatch pool scale`; the driver acts at its
next look, so the panel shows a short confirmation and the rows follow as workers start and
retire. Refused actions (a target beyond the limits, a bad setting) show inline, in red, as do
the driver's problem and the reasons its workers give. A cloud pool also shows its cloud
settings; "New pool…" opens `NewPoolDialog`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from decimal import Decimal
from typing import Any

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import (
    DEFAULT_POOL,
    PRIVATE_POOL,
    InstanceInfo,
    InstanceRow,
    PoolConfig,
    PoolRow,
)
from app.views import style
from app.views.bridge import EngineBridge
from app.views.live_panel import LivePanel
from app.views.pool_dialog import ERROR_COLOR, NewPoolDialog, cloud_summary
from app.views.pool_limits import LimitsForm, count_box

POOL_COLUMNS = ("Name", "Cloud", "Workers", "Cores")
INSTANCE_COLUMNS = (
    "Name",
    "State",
    "Cores",
    "Used",
    "Free",
    "Uptime",
    "Cost so far",
    "Location",
    "Standing",
)
STATE_COLUMN, UPTIME_COLUMN, COST_COLUMN = 1, 5, 6
POLL_EVERY_MS = 2000  # changes made by other processes
THROTTLE_MS = 500  # at most two refreshes a second on bursts of signals
TICK_EVERY_MS = 1000  # uptime and cost
SECONDS_PER_HOUR = Decimal(3600)
JOB_PRIVATE_NOTE = (
    "Workers of their own, one per job, for jobs that name a machine type (`machine_type:` "
    "in the DAG); each retires when its job ends."
)
DRAIN_TEXT = (
    "Drain pool {name}?\n\n"
    "No new workers will start. Live workers retire when their jobs end (idle ones at once).\n"
    "To resume, raise the pool's max live instances again."
)


def _ask_confirm(parent: QWidget, title: str, text: str) -> bool:
    """A Yes / Cancel question; True on Yes."""
    answer = QMessageBox.question(
        parent,
        title,
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    return answer == QMessageBox.StandardButton.Yes


def _cost_now(row: InstanceRow, fetched_at: float, now: float) -> Decimal:
    """The cost read at ``fetched_at``, plus its running attempts' hourly rate since then."""
    hours = Decimal(str(max(0.0, now - fetched_at))) / SECONDS_PER_HOUR
    return row.cost_usd + row.cost_usd_per_hour * hours


def _instance_problem(info: InstanceInfo) -> str | None:
    """A VM the cloud has not deleted yet: its age, why it was retired and why it is still
    there (None for others)."""
    if not info.delete_error:
        return None
    return (
        f"{info.name} (made {style.duration(int(info.age_s))} ago, retired: {info.reason}) "
        f"is not deleted yet: {info.delete_error}"
    )


def _uptime(row: InstanceRow) -> str:
    if row.instance.time_activated is None:
        return ""
    return style.duration(int(row.instance.uptime_s))


def _set_cell(table: QTableWidget, row: int, column: int, text: str) -> QTableWidgetItem:
    """Update a cell's text, reusing its item."""
    item = table.item(row, column)
    if item is None:
        item = QTableWidgetItem()
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        table.setItem(row, column, item)
    if item.text() != text:
        item.setText(text)
    return item


def _table(columns: tuple[str, ...]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


class PoolsPanel(LivePanel):
    """Pools on the left; the chosen pool's workers, limits and scaling buttons on the right."""

    refreshed = Signal()  # fresh data from the engine is on screen

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        # (parent, title, text) -> True to go ahead; tests replace it
        self.confirm: Callable[[QWidget, str, str], bool] = _ask_confirm
        self.pool_list = _table(POOL_COLUMNS)
        self.instances = _table(INSTANCE_COLUMNS)
        self.title = QLabel()
        self.limits = LimitsForm()
        self.min_instances = self.limits.min_instances
        self.max_instances = self.limits.max_instances
        self.max_live_instances = self.limits.max_live_instances
        self.worker_cores = self.limits.worker_cores
        self.price = self.limits.price
        self.apply_button = self.limits.apply_button
        self.add_button = QPushButton("+ worker")
        self.remove_button = QPushButton("− worker")
        self.scale_to = count_box("How many workers to scale to")
        self.scale_button = QPushButton("Scale to N")
        self.scale_button.setToolTip(
            "Hold the pool at N workers: the autoscaler adds none and idle workers stay, "
            "until you release it or change the limits. Scaling down retires idle workers; "
            "busy ones retire when their jobs end."
        )
        self.release_button = QPushButton("Release")
        self.release_button.setToolTip("Let the autoscaler size the pool again")
        self.drain_button = QPushButton("Drain…")
        self.new_pool_button = QPushButton("New pool…")
        self.new_pool_button.setToolTip("Create a local, Compute Engine or Azure pool")
        self.cloud_box = QGroupBox("Cloud")
        self.cloud_summary = QLabel()
        self.cloud_summary.setWordWrap(True)
        self.cloud_summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self._rows: dict[str, PoolRow] = {}
        self._fetched_at = 0.0
        self._selected: str | None = None
        self._load_task: Any = None
        self._again = False
        self._busy = False
        self._action_text = ""
        self._action_error = False
        self._problem: str | None = None
        self._worker_problems: list[str] = []  # reasons the selected pool's workers give
        self._select_when_listed: str | None = None  # a new pool, selected once it is listed
        self._build()

        self._throttle = self.timer(THROTTLE_MS, self.refresh, single_shot=True)
        self.timer(POLL_EVERY_MS, self.refresh, polls=True)
        self.timer(TICK_EVERY_MS, self._on_tick, polls=True)

        self.pool_list.itemSelectionChanged.connect(self._on_pool_selected)
        self.apply_button.clicked.connect(self._on_apply)
        self.add_button.clicked.connect(lambda: self._scale_by(+1))
        self.remove_button.clicked.connect(lambda: self._scale_by(-1))
        self.scale_button.clicked.connect(self._on_scale)
        self.release_button.clicked.connect(self._on_release)
        self.drain_button.clicked.connect(self._on_drain)
        self.new_pool_button.clicked.connect(self.open_new_pool_dialog)
        self.scale_to.valueChanged.connect(self._on_scale_to_changed)
        self.link()
        self._update_buttons()
        self.refresh()

    # -- public -----------------------------------------------------------------------------------

    @property
    def selected_pool(self) -> str | None:
        """The name of the pool shown on the right."""
        return self._selected

    @property
    def message_is_error(self) -> bool:
        """True while the inline message shows a refusal or a pool problem (in red)."""
        return self._action_error or bool(self._problem) or bool(self._worker_problems)

    def select_pool(self, name: str) -> None:
        """Show this pool on the right (as a click on its row does)."""
        for row in range(self.pool_list.rowCount()):
            item = self.pool_list.item(row, 0)
            if item is not None and item.text() == name:
                self.pool_list.selectRow(row)
                return

    def open_new_pool_dialog(self) -> NewPoolDialog:
        """Open the "New pool" dialog (window-modal); the pool it creates gets selected."""
        dialog = NewPoolDialog(self.bridge, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.created.connect(self._on_pool_created)
        dialog.open()
        return dialog

    def refresh(self) -> None:
        """Fetch the pools now, or right after the fetch in flight."""
        if self._load_task is not None and not self._load_task.done():
            self._again = True
            return
        self._load_task = self.bridge.call(self.bridge.service.pools(), self._on_pools)

    # -- Qt ---------------------------------------------------------------------------------------

    # -- building ---------------------------------------------------------------------------------

    def _build(self) -> None:
        QVBoxLayout(self.cloud_box).addWidget(self.cloud_summary)
        self.cloud_box.hide()

        scaling = QHBoxLayout()
        for widget in (self.add_button, self.remove_button, QLabel("Workers:"), self.scale_to):
            scaling.addWidget(widget)
        scaling.addWidget(self.scale_button)
        scaling.addWidget(self.release_button)
        scaling.addStretch(1)
        scaling.addWidget(self.drain_button)

        right = QWidget()
        column = QVBoxLayout(right)
        column.addWidget(self.title)
        column.addWidget(self.instances, 1)
        column.addWidget(self.cloud_box)
        column.addWidget(self.limits)
        column.addLayout(scaling)
        column.addWidget(self.message)

        left = QWidget()
        pools_column = QVBoxLayout(left)
        pools_column.setContentsMargins(0, 0, 0, 0)
        pools_column.addWidget(self.pool_list, 1)
        pools_column.addWidget(self.new_pool_button)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    def links(self) -> list[tuple[Any, Callable[..., None]]]:
        return [
            (self.bridge.instance_changed, self._on_instance_changed),
            (self.bridge.pools_changed, self._schedule_refresh),
        ]

    # -- data -------------------------------------------------------------------------------------

    def _on_instance_changed(self, _event: object) -> None:
        self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        if self.isVisible() and not self._throttle.isActive():  # showing refreshes anyway
            self._throttle.start()

    def _on_pools(self, rows: list[PoolRow]) -> None:
        self._rows = {row.pool.name: row for row in rows}
        self._fetched_at = time.time()
        if self._select_when_listed in self._rows:
            self._selected, self._select_when_listed = self._select_when_listed, None
        if self._selected not in self._rows:
            default = DEFAULT_POOL if DEFAULT_POOL in self._rows else None
            self._selected = default or (rows[0].pool.name if rows else None)
        self._problem = self.bridge.service.problem
        self._fill_pool_list(rows)
        self._show_selected()
        if self._again:
            self._again = False
            self._schedule_refresh()
        self.refreshed.emit()

    def _fill_pool_list(self, rows: list[PoolRow]) -> None:
        self.pool_list.blockSignals(True)
        try:
            self.pool_list.setRowCount(len(rows))
            for r, row in enumerate(rows):
                pool = row.pool
                used = sum(i.used_mcpu for i in row.instances)
                total = sum(i.instance.cores_mcpu for i in row.instances)
                cells = (
                    pool.name,
                    pool.cloud,
                    f"{row.n_live} / {pool.max_live_instances}",
                    f"{style.cores(used)} / {style.cores(total)}",
                )
                note = JOB_PRIVATE_NOTE if pool.name == PRIVATE_POOL else ""
                for c, text in enumerate(cells):
                    _set_cell(self.pool_list, r, c, text).setToolTip(note)
                if pool.name == self._selected:
                    self.pool_list.selectRow(r)
        finally:
            self.pool_list.blockSignals(False)

    def _on_pool_selected(self) -> None:
        items = self.pool_list.selectedItems()
        if not items:
            return
        name_item = self.pool_list.item(items[0].row(), 0)
        name = name_item.text() if name_item is not None else None
        if name is None or name == self._selected:
            return
        self._selected = name
        self._action_text, self._action_error = "", False
        self._show_selected()
        self.refresh()

    def _show_selected(self) -> None:
        row = self._rows.get(self._selected or "")
        self._show_instances(row)
        self._show_cloud(row)
        if row is not None:
            pool = row.pool
            self.title.setText(_title(row))
            if self.limits.pool_name != pool.name:
                self._fill_editors(pool, row.n_live)
            else:
                self.limits.follow(pool)
        else:
            self.title.setText("No pool")
        self._show_message()
        self._update_buttons()

    def _show_instances(self, row: PoolRow | None) -> None:
        rows = row.instances if row is not None else ()
        self.instances.setRowCount(len(rows))
        for r, inst_row in enumerate(rows):
            info = inst_row.instance
            values = (
                info.name,
                info.shown_state,
                style.cores(info.cores_mcpu),
                style.cores(inst_row.used_mcpu),
                style.cores(inst_row.free_mcpu),
                _uptime(inst_row),
                style.usd(_cost_now(inst_row, self._fetched_at, time.time())),
                info.location or "",
                "yes" if info.standing else "",
            )
            items = [_set_cell(self.instances, r, c, text) for c, text in enumerate(values)]
            items[STATE_COLUMN].setForeground(style.state_color(info.state))
            items[0].setToolTip(_instance_problem(info) or info.reason or "")

    def _show_cloud(self, row: PoolRow | None) -> None:
        """A cloud pool's settings, and the reasons its workers give (pending, failing)."""
        lines = cloud_summary(row.pool) if row is not None else []
        self.cloud_box.setVisible(bool(lines))
        self.cloud_summary.setText("\n".join(lines))
        instances = row.instances if row is not None else ()
        self._worker_problems = [
            _instance_problem(r.instance) or f"{r.instance.name}: {r.instance.reason}"
            for r in instances
            if r.instance.reason or r.instance.delete_error
        ]
        if row is not None and row.last_failure:
            self._worker_problems.append(f"Workers cannot start: {row.last_failure}")

    def _on_tick(self) -> None:
        row = self._rows.get(self._selected or "")
        if row is None:
            return
        now = time.time()
        for r, inst_row in enumerate(row.instances[: self.instances.rowCount()]):
            _set_cell(self.instances, r, UPTIME_COLUMN, _uptime(inst_row))
            cost = _cost_now(inst_row, self._fetched_at, now)
            _set_cell(self.instances, r, COST_COLUMN, style.usd(cost))

    def _fill_editors(self, pool: PoolConfig, n_live: int) -> None:
        """Push a pool's stored settings into the editors (never while the user edits them)."""
        if self.limits.pool_name != pool.name:  # a refill after Apply keeps the user's N
            self.scale_to.blockSignals(True)
            self.scale_to.setValue(n_live if pool.scale_target is None else pool.scale_target)
            self.scale_to.blockSignals(False)
        self.limits.fill(pool)
        self._on_scale_to_changed(self.scale_to.value())

    # -- actions ----------------------------------------------------------------------------------

    def _scale_by(self, delta: int) -> None:
        name = self._selected
        if name is None:
            return
        text = f"Adding a worker to {name}…" if delta > 0 else f"Removing a worker from {name}…"
        self._run(self.bridge.service.add_workers(name, delta), text)

    def _on_scale_to_changed(self, n: int) -> None:
        self.scale_button.setText(f"Scale to {n}")

    def _on_scale(self) -> None:
        name = self._selected
        if name is None:
            return
        n = self.scale_to.value()
        pool = self._rows[name].pool if name in self._rows else None
        if pool is not None and n > pool.max_live_instances:
            drained = " (the pool was drained)" if pool.max_live_instances == 0 else ""
            self._action_text = (
                f"Max live instances is {pool.max_live_instances}{drained}: raise it to at "
                f"least {n} in the Limits form above and press Apply, then Scale to {n}."
            )
            self._action_error = True
            self._show_message()
            return
        workers = f"{n} worker{'' if n == 1 else 's'}"
        text = (
            f"{name} is held at {workers} until you release it or change the limits "
            "(idle workers retire first, busy ones when their jobs end)."
        )
        self._run(self.bridge.service.scale_pool(name, n), text)

    def _on_release(self) -> None:
        name = self._selected
        if name is not None:
            text = f"The autoscaler sizes {name} again."
            self._run(self.bridge.service.release_scale(name), text)

    def _on_drain(self) -> None:
        name = self._selected
        if name is None or not self.confirm(self, "Drain pool", DRAIN_TEXT.format(name=name)):
            return
        text = f"Draining {name}: its workers retire as their jobs end."
        self._run(self.bridge.service.drain_pool(name), text, refill=True)

    def _on_pool_created(self, pool: PoolConfig) -> None:
        self._select_when_listed = pool.name
        self._action_text, self._action_error = f"Created pool {pool.name}.", False
        self._show_message()
        self.bridge.pools_changed.emit()
        self.refresh()

    def _on_apply(self) -> None:
        name = self._selected
        row = self._rows.get(name or "")
        if name is None or row is None:
            return
        # only what the user changed: a setting changed elsewhere meanwhile stays as it is
        changes = self.limits.changes(row.pool)
        if not changes:
            self._action_text, self._action_error = "Nothing to apply: no field changed.", False
            self._show_message()
            return
        text = f"Saved the settings of {name}."
        self._run(self.bridge.service.set_pool(name, **changes), text, refill=True)

    def _run(
        self, coro: Coroutine[Any, Any, PoolConfig], done_text: str, *, refill: bool = False
    ) -> None:
        """Run one pool action; confirm or show its refusal inline; refresh on success."""
        self._busy = True
        self._action_text, self._action_error = "", False
        self._show_message()
        self._update_buttons()

        def done(pool: PoolConfig) -> None:
            self._action_text, self._action_error = done_text, False
            if pool.name in self._rows:  # the stored settings now, before the next refresh
                self._rows[pool.name] = replace(self._rows[pool.name], pool=pool)
                self._show_selected()
            if refill and pool.name == self._selected:
                n_live = self._rows[pool.name].n_live if pool.name in self._rows else 0
                self._fill_editors(pool, n_live)
            self._show_message()
            self.bridge.pools_changed.emit()

        def failed(exc: Exception) -> None:
            self._action_text, self._action_error = str(exc), True
            self._show_message()

        def finished(_task: object) -> None:
            self._busy = False
            self._update_buttons()

        task = self.bridge.call(coro, self._guard(done), on_error=self._guard(failed))
        task.add_done_callback(self._guard(finished))

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        """Call ``fn`` only while this panel exists (a result may arrive after it closed)."""

        def call(*args: Any) -> None:
            if shiboken6.isValid(self):
                fn(*args)

        return call

    def _show_message(self) -> None:
        lines = [text for text in (self._action_text, self._problem) if text]
        lines += self._worker_problems
        self.message.setText("\n".join(lines))
        self.message.setStyleSheet(f"color: {ERROR_COLOR};" if self.message_is_error else "")

    def _update_buttons(self) -> None:
        enabled = self._selected is not None and not self._busy
        buttons = (self.add_button, self.remove_button, self.scale_button, self.drain_button)
        for button in (self.apply_button, *buttons):
            button.setEnabled(enabled)
        row = self._rows.get(self._selected or "")
        self.release_button.setEnabled(
            enabled and row is not None and row.pool.scale_target is not None
        )


def _title(row: PoolRow) -> str:
    """The pool's name, its live workers and limits, and the user's scale target if held."""
    pool = row.pool
    text = (
        f"Pool {pool.name} ({pool.cloud}): {row.n_live} live of at most "
        f"{pool.max_live_instances} at once, {pool.max_instances} in all"
    )
    if pool.scale_target is not None:
        text += f"; held at {pool.scale_target} by Scale to N (Release lets the autoscaler decide)"
    if pool.name == PRIVATE_POOL:
        text += f"\n{JOB_PRIVATE_NOTE}"
    return text
