"""The dashboard's pieces: per-plot series stores, the time plots that draw them, budget bars.

A `SeriesStore` keeps one plot's samples as growable numpy columns (one per series, keyed by
name, in order of first appearance). A `TimePlot` creates one curve per series the first time
it sees it and afterwards only calls `setData` on it. Stacked series are cumulative curves
filled down to 0, each drawn over the ones stacked above it with an opaque fill: a day of
samples fills in tens of milliseconds, where `FillBetweenItem` polygons took half a second.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QWidget

from app.engine.service import Budget, MetricsSample
from app.views.style import JOB_STATES, STATE_COLORS, usd

# a categorical palette readable on light and dark backgrounds (users and projects)
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
BUDGET_COLORS = {"ok": "#43a047", "warning": "#fb8c00", "over": "#e53935"}
BUDGET_WARNING_FRACTION = 0.8
INSTANCE_STATES = ("pending", "active", "inactive")
_STACK_OPACITY = 0.45  # a band's fill: its colour mixed with the background


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """One series of a plot: its legend name, what decides its colour, and how it is drawn."""

    name: str
    color_key: str  # "state:<state>", "user:<user>", "project:<project>" or a colour "#rrggbb"
    style: str = "line"  # "line", "dashed" or "stacked"


# -- what each plot shows of a sample -------------------------------------------------------------


def share_values(sample: MetricsSample) -> dict[SeriesKey, float]:
    """Cores in use (stacked) and fair share (dashed) per user."""
    values: dict[SeriesKey, float] = {}
    users = sorted(set(sample.in_use_by_user_mcpu) | set(sample.share_by_user_mcpu))
    for user in users:
        color = f"user:{user}"
        values[SeriesKey(user, color, "stacked")] = sample.in_use_by_user_mcpu.get(user, 0) / 1000
        share = sample.share_by_user_mcpu.get(user, 0) / 1000
        values[SeriesKey(f"{user} fair share", color, "dashed")] = share
    return values


def cores_values(sample: MetricsSample) -> dict[SeriesKey, float]:
    """Cores in use, free and booting."""
    return {
        SeriesKey("in use", "state:Running"): sample.cores_in_use_mcpu / 1000,
        SeriesKey("free", "state:active"): sample.cores_free_mcpu / 1000,
        SeriesKey("booting", "state:pending"): sample.cores_booting_mcpu / 1000,
    }


def instance_values(sample: MetricsSample) -> dict[SeriesKey, float]:
    """Instances per state (pending, active, inactive, and any other state reported)."""
    states = list(INSTANCE_STATES) + sorted(set(sample.instances_by_state) - set(INSTANCE_STATES))
    return {
        SeriesKey(str(state), f"state:{state}"): float(sample.instances_by_state.get(state, 0))
        for state in states
    }


def job_values(sample: MetricsSample) -> dict[SeriesKey, float]:
    """Jobs of unfinished batches per state, in the usual state order."""
    order = {state: i for i, state in enumerate(JOB_STATES)}
    states = sorted(sample.jobs_by_state, key=lambda s: (order.get(s, len(order)), s))
    return {SeriesKey(str(s), f"state:{s}"): float(sample.jobs_by_state[s]) for s in states}


def cost_values(sample: MetricsSample) -> dict[SeriesKey, float]:
    """Cumulative cost per user (solid) and per billing project (dashed)."""
    values = {
        SeriesKey(user, f"user:{user}"): cost
        for user, cost in sorted(sample.cost_by_user_usd.items())
    }
    for project, cost in sorted(sample.cost_by_project_usd.items()):
        values[SeriesKey(f"{project} (project)", f"project:{project}", "dashed")] = cost
    return values


@dataclass(frozen=True, slots=True)
class PlotSpec:
    """A time plot's title, y unit and the function that reads its values from a sample."""

    key: str
    title: str
    y_label: str
    values: Callable[[MetricsSample], dict[SeriesKey, float]]
    # "peak" keeps short spikes visible; stacked bands use "mean": a band between two
    # peak-downsampled curves is a zigzag polygon that takes a second to fill over a day
    downsample_mode: str = "peak"


TIME_PLOTS = (
    PlotSpec("share", "Cores per user: in use vs fair share", "cores", share_values, "mean"),
    PlotSpec("cores", "Cores", "cores", cores_values),
    PlotSpec("instances", "Instances by state", "instances", instance_values),
    PlotSpec("jobs", "Jobs by state (unfinished batches)", "jobs", job_values),
    PlotSpec("cost", "Cost (cumulative)", "USD", cost_values),
)


# -- storage ---------------------------------------------------------------------------------------


class SeriesStore:
    """One plot's samples: a time column and one value column per series, grown in place.

    Columns only ever get new rows past their end and are reallocated when they grow, so the
    views handed to the plot items stay valid.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Forget every sample and series."""
        self._capacity = 256
        self._start = 0
        self._end = 0
        self._times = np.zeros(self._capacity)
        self._columns: dict[str, np.ndarray] = {}
        self.keys: dict[str, SeriesKey] = {}

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, time_s: float, values: Mapping[SeriesKey, float]) -> None:
        """Add one sample; a series missing from it is 0 there, a new one was 0 before."""
        if self._end == self._capacity:
            self._grow()
        self._times[self._end] = time_s
        for key, value in values.items():
            column = self._columns.get(key.name)
            if column is None:
                column = self._columns[key.name] = np.zeros(self._capacity)
                self.keys[key.name] = key
            column[self._end] = value
        self._end += 1

    def drop_before(self, time_s: float) -> None:
        """Forget the samples older than ``time_s`` (the window moved on)."""
        skip = int(np.searchsorted(self._times[self._start : self._end], time_s))
        self._start += skip

    @property
    def times(self) -> np.ndarray:
        return self._times[self._start : self._end]

    def column(self, name: str) -> np.ndarray:
        return self._columns[name][self._start : self._end]

    def _grow(self) -> None:
        n = self._end - self._start
        self._capacity = max(256, 2 * n)
        span = slice(self._start, self._end)
        times = np.zeros(self._capacity)
        times[:n] = self._times[span]
        self._times = times
        for name, old in self._columns.items():
            column = np.zeros(self._capacity)
            column[:n] = old[span]
            self._columns[name] = column
        self._start, self._end = 0, n


# -- drawing ---------------------------------------------------------------------------------------


class ColorMap:
    """Colours by key: states from the style, users and projects from a palette, stable."""

    def __init__(self) -> None:
        self._assigned: dict[str, str] = {}

    def color(self, color_key: str) -> QColor:
        if color_key.startswith("#"):
            return QColor(color_key)
        if color_key.startswith("state:"):
            return QColor(STATE_COLORS.get(color_key.removeprefix("state:"), "#9e9e9e"))
        if color_key not in self._assigned:
            self._assigned[color_key] = PALETTE[len(self._assigned) % len(PALETTE)]
        return QColor(self._assigned[color_key])


class TimePlot(pg.PlotWidget):
    """A titled plot over time with a legend; one curve per series, created once."""

    def __init__(self, spec: PlotSpec, colors: ColorMap, parent: QWidget | None = None) -> None:
        super().__init__(
            parent, title=spec.title, axisItems={"bottom": pg.DateAxisItem(orientation="bottom")}
        )
        self.spec = spec
        self.items: dict[str, pg.PlotDataItem] = {}
        self._keys: dict[str, SeriesKey] = {}
        self._colors = colors
        self._below: dict[str, pg.PlotDataItem] = {}  # a stacked band's lower edge
        self._top: pg.PlotDataItem | None = None  # the highest stacked curve so far
        self._n_stacked = 0
        item = self.getPlotItem()
        self._follow_palette()
        item.setLabel("left", spec.y_label)
        item.showGrid(x=True, y=True, alpha=0.2)
        text = self.palette().color(QPalette.ColorRole.Text)
        item.addLegend(offset=(5, 5), labelTextSize="8pt", labelTextColor=text)
        item.setDownsampling(auto=True, mode=spec.downsample_mode)
        item.setClipToView(True)
        item.setMouseEnabled(x=True, y=False)
        item.getViewBox().setAutoVisible(y=True)
        item.enableAutoRange(y=True)

    def show_data(self, store: SeriesStore) -> None:
        """Give every curve the store's current data (creating the curves of new series)."""
        for name, key in store.keys.items():
            if name not in self.items:
                self._add_item(key)
        x = store.times
        zeros = np.zeros(len(x))
        stacked = zeros
        highest = 0.0
        for name, item in self.items.items():  # in creation order, which is the stacking order
            y = store.column(name) if name in store.keys else zeros
            if self._keys[name].style == "stacked":
                stacked = stacked + y
                y = stacked
            item.setData(x, y)
            highest = max(highest, float(np.max(y)) if len(y) else 0.0)
        self._fit_y(highest)

    def _fit_y(self, highest: float) -> None:
        """Nothing above zero (no spend yet, nothing running): 0 … 1, not pyqtgraph's
        ±hundreds around a flat line; else follow the data."""
        item = self.getPlotItem()
        if highest <= 0:
            item.setYRange(0, 1, padding=0)  # turns the y auto-range off
        elif not item.getViewBox().autoRangeEnabled()[1]:
            item.enableAutoRange(y=True)

    def series(self) -> dict[str, tuple[list[float], list[float]]]:
        """What each curve holds: (times, values); a stacked band's own height, not its top."""
        shown: dict[str, tuple[list[float], list[float]]] = {}
        for name, item in self.items.items():
            x, y = item.getOriginalDataset()
            if x is None or y is None:
                shown[name] = ([], [])
                continue
            below = self._below.get(name)
            if below is not None:
                _, y_below = below.getOriginalDataset()
                if y_below is not None and len(y_below) == len(y):
                    y = y - y_below
            shown[name] = ([float(v) for v in x], [float(v) for v in y])
        return shown

    def export_png(self, path: str) -> None:
        """Write the plot as a PNG image, at least 800 pixels wide."""
        exporter = pyqtgraph.exporters.ImageExporter(self.getPlotItem())
        width = max(800, self.width())
        exporter.parameters()["width"] = width
        if not exporter.parameters()["height"]:
            exporter.parameters()["height"] = width // 2
        exporter.export(str(path))

    def _follow_palette(self) -> None:
        # pyqtgraph draws black on white... or white on black: follow the desktop's palette
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.Text)
        self.setBackground(palette.color(QPalette.ColorRole.Base))
        item = self.getPlotItem()
        item.setTitle(self.spec.title, color=text, size="10pt")
        for side in ("left", "bottom"):
            axis = item.getAxis(side)
            axis.setPen(text)
            axis.setTextPen(text)

    def _add_item(self, key: SeriesKey) -> pg.PlotDataItem:
        color = self._colors.color(key.color_key)
        style = Qt.PenStyle.DashLine if key.style == "dashed" else Qt.PenStyle.SolidLine
        pen = pg.mkPen(color, width=2, style=style)
        item = self.getPlotItem().plot([], [], pen=pen, name=key.name)
        if key.style == "stacked":
            # the lowest band is drawn last, over the fills of the bands stacked on it
            self._n_stacked += 1
            item.setZValue(-self._n_stacked)
            item.setFillLevel(0)
            item.setFillBrush(_mix(color, self.backgroundBrush().color(), _STACK_OPACITY))
            if self._top is not None:
                self._below[key.name] = self._top
            self._top = item
        self.items[key.name] = item
        self._keys[key.name] = key
        return item


def _mix(color: QColor, background: QColor, opacity: float) -> QColor:
    """The opaque colour of ``color`` drawn at ``opacity`` over ``background``."""
    return QColor.fromRgbF(
        *(
            opacity * c + (1 - opacity) * b
            for c, b in zip(color.getRgbF()[:3], background.getRgbF()[:3], strict=True)
        )
    )


class BudgetsView(QWidget):
    """One row per billing project: spent of limit as a bar, orange from 80 %, red from 100 %."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bars: dict[str, QProgressBar] = {}
        self.texts: dict[str, QLabel] = {}
        self.budgets: dict[str, Budget] = {}
        self._names: dict[str, QLabel] = {}
        self._grid = QGridLayout(self)
        self._grid.setColumnStretch(1, 1)
        self.empty = QLabel("No billing projects.")
        self._grid.addWidget(self.empty, 0, 0, 1, 3)

    def show_budgets(self, budgets: Mapping[str, Budget]) -> None:
        """Show these projects' spend; projects no longer reported are hidden."""
        self.budgets = dict(budgets)
        self.empty.setVisible(not budgets)
        for project in self.bars:
            if project not in budgets:
                for widget in (self._names[project], self.bars[project], self.texts[project]):
                    widget.hide()
        for project, budget in sorted(budgets.items()):
            if project not in self.bars:
                self._add_row(project)
            self._show_row(project, budget)

    def level(self, project: str) -> str:
        """'ok', 'warning' (≥ 80 %), 'over' (≥ 100 %) or 'no limit'."""
        fraction = self.budgets[project].fraction
        if fraction is None:
            return "no limit"
        if fraction >= 1:
            return "over"
        return "warning" if fraction >= BUDGET_WARNING_FRACTION else "ok"

    def _add_row(self, project: str) -> None:
        row = self._grid.rowCount()
        self._names[project] = QLabel(project)
        bar = self.bars[project] = QProgressBar()
        bar.setRange(0, 100)
        self.texts[project] = QLabel()
        self._grid.addWidget(self._names[project], row, 0)
        self._grid.addWidget(bar, row, 1)
        self._grid.addWidget(self.texts[project], row, 2)

    def _show_row(self, project: str, budget: Budget) -> None:
        bar, text = self.bars[project], self.texts[project]
        self._names[project].show()
        text.show()
        level = self.level(project)
        if level == "no limit":
            bar.hide()
            text.setText(f"no limit · {usd(budget.spent_usd)} spent")
            return
        assert budget.limit_usd is not None and budget.fraction is not None
        percent = round(budget.fraction * 100)
        bar.setValue(min(100, percent))
        bar.setFormat(f"{percent} %")
        palette = bar.palette()
        palette.setColor(QPalette.ColorRole.Highlight, QColor(BUDGET_COLORS[level]))
        bar.setPalette(palette)
        bar.show()
        text.setText(f"{usd(budget.spent_usd)} of {usd(budget.limit_usd)}")
