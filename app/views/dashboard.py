"""The live dashboard: cores, fair shares, instances, jobs, cost and budgets over time.

Each `metrics_sampled` signal only appends the sample to in-memory columns and marks them
dirty; a ~1 Hz timer pushes them into the plots' existing curves while the panel is visible.
Choosing a time window reloads the columns from the service's in-memory history, a chunk per
event-loop turn so that a day of samples never blocks the loop.
"""

from __future__ import annotations

import csv
import functools
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.engine.service import MetricsSample
from app.views.bridge import EngineBridge
from app.views.dashboard_files import WorkerCachePanel
from app.views.dashboard_plots import TIME_PLOTS, BudgetsView, ColorMap, SeriesStore, TimePlot
from app.views.style import usd

WINDOWS = (("5 min", 300.0), ("1 h", 3600.0), ("24 h", 86400.0))
REFRESH_EVERY_MS = 1000
# a long window moves less than a pixel a second: refresh it once per 1/3600 of its length
REFRESH_STEPS_PER_WINDOW = 3600
LOAD_CHUNK = 1000  # history samples converted per event-loop turn (~15 ms)
BUDGETS = "budgets"


def _ask_save_path(parent: QWidget, caption: str, file_filter: str) -> str:
    path, _ = QFileDialog.getSaveFileName(parent, caption, "", file_filter)
    return path


class DashboardPanel(QWidget):
    """Live plots of the engine's metrics, with a time window and PNG / CSV export per plot."""

    refreshed = Signal()  # the plots were just given fresh data

    def __init__(self, bridge: EngineBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.plot_keys: tuple[str, ...] = (*(spec.key for spec in TIME_PLOTS), BUDGETS)
        # (parent, caption, filter) -> a path or "" when cancelled; tests replace it
        self.ask_path: Callable[[QWidget, str, str], str] = _ask_save_path
        self.export_actions: dict[str, tuple[QAction, QAction]] = {}
        self.window = QComboBox()
        for label, seconds in WINDOWS:
            self.window.addItem(label, seconds)
        self.spend_today = QLabel()
        colors = ColorMap()
        self.plots = {spec.key: TimePlot(spec, colors) for spec in TIME_PLOTS}
        self.budgets = BudgetsView()
        self.worker_caches = WorkerCachePanel(bridge)
        self._stores = {key: SeriesStore() for key in self.plots}
        self._follow = dict.fromkeys(self.plots, True)  # x range follows "now"
        self._last_time = 0.0
        self._latest: MetricsSample | None = None
        self._dirty = False
        self._loading: deque[MetricsSample] | None = None
        self._connected = False
        self._build()

        self._timer = QTimer(self)
        self._timer.setInterval(self._refresh_interval_ms())
        self._timer.timeout.connect(self._on_tick)
        self._loader = QTimer(self)
        self._loader.setInterval(0)
        self._loader.timeout.connect(self._load_step)
        self.window.currentIndexChanged.connect(self._on_window_changed)
        for key, plot in self.plots.items():
            # a plot the user pans or zooms stops following "now" until a window is chosen
            view = plot.getPlotItem().getViewBox()
            view.sigRangeChangedManually.connect(functools.partial(self._stop_following, key))
        self._connect()
        self._timer.start()
        self._load_history()

    # -- public -----------------------------------------------------------------------------------

    @property
    def window_s(self) -> float:
        """The chosen time window in seconds."""
        return float(self.window.currentData())

    @property
    def curves(self) -> dict[str, dict[str, pg.PlotDataItem]]:
        """Each time plot's curves by series name (created once, then only updated)."""
        return {key: dict(plot.items) for key, plot in self.plots.items()}

    @property
    def loading(self) -> bool:
        """True while the window's history is still being converted."""
        return self._loading is not None

    def series(self, plot_key: str) -> dict[str, tuple[list[float], list[float]]]:
        """What a time plot shows: series name -> (unix times, values in the plot's unit)."""
        return self.plots[plot_key].series()

    def refresh_now(self) -> None:
        """Push the collected samples into the plots now (the timer does it about once a second)."""
        now = time.time()
        start = now - self.window_s
        for key, plot in self.plots.items():
            store = self._stores[key]
            store.drop_before(start)
            if self._dirty:
                plot.show_data(store)
            if self._follow[key]:
                plot.setXRange(start, now, padding=0)
        if self._dirty and self._latest is not None:
            self.budgets.show_budgets(self._latest.budgets)
            self.spend_today.setText(f"Spent today: {usd(self._latest.spend_today_usd)}")
        self._dirty = False
        self.refreshed.emit()

    def export_png(self, plot_key: str, path: str | Path) -> None:
        """Save a plot (or the budget bars) as a PNG image."""
        if self._dirty and self._loading is None:
            self.refresh_now()  # hidden panels are not refreshed by the timer
        if plot_key == BUDGETS:
            if not self.budgets.grab().save(str(path), "PNG"):
                raise OSError(f"could not write {path}")
            return
        self.plots[plot_key].export_png(str(path))

    def export_csv(self, plot_key: str, path: str | Path) -> None:
        """Save a plot's data: a `time,<series…>` header and one row per sample (ISO times)."""
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            if plot_key == BUDGETS:
                writer.writerow(["project", "spent_usd", "limit_usd", "percent"])
                for project, budget in sorted(self.budgets.budgets.items()):
                    fraction = budget.fraction
                    writer.writerow(
                        [
                            project,
                            f"{budget.spent_usd:.2f}",
                            "" if budget.limit_usd is None else f"{budget.limit_usd:.2f}",
                            "" if fraction is None else f"{fraction * 100:.1f}",
                        ]
                    )
                return
            store = self._stores[plot_key]
            names = list(store.keys)
            writer.writerow(["time", *names])
            columns = [store.column(name) for name in names]
            for i, t in enumerate(store.times):
                when = datetime.fromtimestamp(float(t)).astimezone().isoformat(timespec="seconds")
                writer.writerow([when, *(f"{float(c[i]):g}" for c in columns)])

    # -- Qt ---------------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._connected:  # shown again after being closed: catch up from the history
            self._connect()
            self._timer.start()
            self._load_history()
        else:
            self.refresh_now()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._connected:
            self.bridge.metrics_sampled.disconnect(self._on_metrics_sampled)
            self._connected = False
        self._timer.stop()
        self._loader.stop()
        self._loading = None
        super().closeEvent(event)

    # -- private ----------------------------------------------------------------------------------

    def _build(self) -> None:
        top = QHBoxLayout()
        top.addWidget(QLabel("Window:"))
        top.addWidget(self.window)
        top.addStretch(1)
        top.addWidget(self.spend_today)
        grid = QGridLayout()
        cells: list[QWidget] = [self._cell(key, plot) for key, plot in self.plots.items()]
        box = QGroupBox("Budgets")
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(self._export_row(BUDGETS))
        box_layout.addWidget(self.budgets)
        box_layout.addStretch(1)
        beside = QWidget()  # budgets and worker caches share the last cell: both are short
        beside_layout = QVBoxLayout(beside)
        beside_layout.setContentsMargins(0, 0, 0, 0)
        beside_layout.addWidget(box)
        beside_layout.addWidget(self.worker_caches, 1)
        cells.append(beside)
        for i, cell in enumerate(cells):
            grid.addWidget(cell, i // 2, i % 2)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(grid, 1)

    def _cell(self, key: str, plot: TimePlot) -> QWidget:
        cell = QWidget()
        layout = QVBoxLayout(cell)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._export_row(key))
        layout.addWidget(plot, 1)
        plot.setMinimumHeight(180)
        return cell

    def _export_row(self, key: str) -> QHBoxLayout:
        png = QAction("Export PNG…", self)
        png.triggered.connect(lambda: self._export(key, "PNG image (*.png)", self.export_png))
        csv_action = QAction("Export CSV…", self)
        csv_action.triggered.connect(lambda: self._export(key, "CSV file (*.csv)", self.export_csv))
        self.export_actions[key] = (png, csv_action)
        menu = QMenu(self)
        menu.addActions([png, csv_action])
        button = QToolButton()
        button.setText("Export")
        button.setMenu(menu)
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(button)
        return row

    def _export(self, key: str, file_filter: str, write: Callable[[str, str], None]) -> None:
        path = self.ask_path(self, f"Export {key}", file_filter)
        if not path:
            return
        try:
            write(key, path)
        except OSError as exc:
            self.bridge.user_error.emit(f"Could not export to {path}: {exc.strerror or exc}")

    def _connect(self) -> None:
        self.bridge.metrics_sampled.connect(self._on_metrics_sampled)
        self._connected = True

    def _on_metrics_sampled(self, sample: MetricsSample) -> None:
        if self._loading is not None:
            self._loading.append(sample)  # after the history being loaded
            return
        self._append(sample)

    def _append(self, sample: MetricsSample) -> None:
        self._latest = sample
        self._dirty = True
        if sample.time <= self._last_time:
            return  # already shown (history and live samples overlap)
        self._last_time = sample.time
        for spec in TIME_PLOTS:
            self._stores[spec.key].append(sample.time, spec.values(sample))

    def _on_window_changed(self) -> None:
        self._follow = dict.fromkeys(self.plots, True)
        self._timer.setInterval(self._refresh_interval_ms())
        self._load_history()

    def _load_history(self) -> None:
        for store in self._stores.values():
            store.clear()
        self._last_time = 0.0
        self._loading = deque(self.bridge.service.history(self.window_s))
        self._load_step()
        if self._loading is not None:
            self._loader.start()

    def _load_step(self) -> None:
        if self._loading is None:
            self._loader.stop()
            return
        for _ in range(min(LOAD_CHUNK, len(self._loading))):
            self._append(self._loading.popleft())
        if not self._loading:
            self._loading = None
            self._loader.stop()
            self._dirty = True
            if self.isVisible():
                self.refresh_now()

    def _stop_following(self, key: str, *_: object) -> None:
        self._follow[key] = False

    def _refresh_interval_ms(self) -> int:
        return max(REFRESH_EVERY_MS, round(1000 * self.window_s / REFRESH_STEPS_PER_WINDOW))

    def _on_tick(self) -> None:
        if self.isVisible() and self._loading is None:
            self.refresh_now()
