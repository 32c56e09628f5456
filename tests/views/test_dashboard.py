"""The dashboard: live metrics from the real engine, time windows, export, budget bars."""

from __future__ import annotations

import csv
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from PySide6.QtGui import QPalette
from pytestqt.qtbot import QtBot

from app.engine.billing.projects import create_project, set_limit
from app.engine.metrics import Budget, MetricsSample
from app.models.spec import parse_dag_text
from app.views.bridge import EngineBridge
from app.views.dashboard import DashboardPanel
from app.views.dashboard_plots import BUDGET_COLORS
from tests.views.conftest import until

BATCH = """
version: 1
name: three-sleeps
jobs:
  - {name: a, command: sleep 2, cpu: 0.5}
  - {name: b, command: sleep 2, cpu: 0.5}
  - {name: c, command: sleep 2, cpu: 0.5}
"""


def _panel(bridge: EngineBridge, qtbot: QtBot) -> DashboardPanel:
    panel = DashboardPanel(bridge)
    qtbot.addWidget(panel)
    panel.resize(1000, 900)
    panel.show()
    return panel


def _values(panel: DashboardPanel, plot_key: str, series: str) -> list[float]:
    return panel.series(plot_key).get(series, ([], []))[1]


def _x_width(panel: DashboardPanel, plot_key: str) -> float:
    (x0, x1), _ = panel.plots[plot_key].viewRange()
    return x1 - x0


async def test_a_running_batch_shows_in_the_plots(bridge: EngineBridge, qtbot: QtBot) -> None:
    panel = _panel(bridge, qtbot)
    finished: list[object] = []
    bridge.batch_finished.connect(finished.append)
    await bridge.service.submit(parse_dag_text(BATCH, source="t.yaml"))
    await until(lambda: finished, timeout_s=30, what="the batch to finish")
    panel.refresh_now()

    assert max(_values(panel, "cores", "in use")) > 0
    share = panel.series("share")
    assert "tester" in share and "tester fair share" in share
    assert max(share["tester"][1]) >= 1.0  # at least two of the half-core jobs at once
    assert max(share["tester fair share"][1]) > 0
    assert max(_values(panel, "jobs", "Running")) >= 1
    await until(
        lambda: _values(panel, "instances", "active")[-1:] == [1.0], what="one active instance"
    )
    assert panel.plot_keys == ("share", "cores", "instances", "jobs", "cost", "budgets")
    assert {"pending", "active", "inactive"} <= set(panel.series("instances"))


async def test_curves_are_made_once_and_the_window_sets_range_and_data(
    bridge: EngineBridge, qtbot: QtBot
) -> None:
    panel = _panel(bridge, qtbot)
    await until(lambda: len(_values(panel, "cores", "free")) >= 2, what="two samples shown")
    before = {key: dict(items) for key, items in panel.curves.items()}
    refreshes: list[None] = []
    panel.refreshed.connect(lambda: refreshes.append(None))
    await until(lambda: len(refreshes) >= 3, what="three timer refreshes")
    assert panel.curves == before
    for key, items in panel.curves.items():
        for name, item in items.items():
            assert item is before[key][name], f"{key}/{name} was recreated"
    assert abs(_x_width(panel, "cores") - 300) < 2

    # a sample from half an hour ago is in the 1 h window only
    old = time.time() - 1800
    bridge.service.samples.appendleft(MetricsSample(time=old, cores_in_use_mcpu=1500))
    panel.window.setCurrentIndex(panel.window.findText("1 h"))
    await until(lambda: not panel.loading, what="the 1 h history")
    panel.refresh_now()
    assert abs(_x_width(panel, "cores") - 3600) < 2
    times, values = panel.series("cores")["in use"]
    assert times[0] == old and values[0] == 1.5

    panel.window.setCurrentIndex(panel.window.findText("5 min"))
    await until(lambda: not panel.loading, what="the 5 min history")
    panel.refresh_now()
    assert abs(_x_width(panel, "cores") - 300) < 2
    assert min(panel.series("cores")["in use"][0]) > old
    for key, items in panel.curves.items():
        for name, item in items.items():
            assert item is before[key][name], f"{key}/{name} was recreated by the window"


async def test_export_png_and_csv(bridge: EngineBridge, qtbot: QtBot, tmp_path: Path) -> None:
    panel = _panel(bridge, qtbot)
    await until(lambda: _values(panel, "cores", "free")[-1:] == [2.0], what="the worker's cores")

    png = tmp_path / "cores.png"
    panel.export_png("cores", png)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000

    out = tmp_path / "cores.csv"
    panel.export_csv("cores", out)
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["time", "in use", "free", "booting"]
    assert len(rows) >= 2
    for row in rows[1:]:
        assert datetime.fromisoformat(row[0]).tzinfo is not None
    assert rows[-1][1:] == ["0", "2", "0"]  # the idle worker's two cores are free

    # the menu actions ask for a path, then write the same files
    asked: list[str] = []

    def ask(parent: object, caption: str, file_filter: str) -> str:
        asked.append(file_filter)
        return str(tmp_path / ("via-action.png" if "png" in file_filter else "via-action.csv"))

    panel.ask_path = ask
    png_action, csv_action = panel.export_actions["jobs"]
    png_action.trigger()
    csv_action.trigger()
    assert (tmp_path / "via-action.png").read_bytes().startswith(b"\x89PNG")
    header = (tmp_path / "via-action.csv").read_text().splitlines()[0]
    assert header.startswith("time")
    assert len(asked) == 2


async def test_budget_bars_turn_orange_and_red(bridge: EngineBridge, qtbot: QtBot) -> None:
    panel = _panel(bridge, qtbot)
    service = bridge.service
    await create_project(service.db, "lab", limit_usd=Decimal(50))
    await set_limit(service.db, "lab", Decimal(100))
    await create_project(service.db, "open")

    def feed(spent_usd: float) -> None:
        # the engine reads spend every few seconds; a hand-made sample shows it at once
        budgets = {"lab": Budget(spent_usd, 100.0), "open": Budget(3.0, None)}
        bridge.metrics_sampled.emit(MetricsSample(time=time.time(), budgets=budgets))
        panel.refresh_now()

    feed(10.0)
    bar = panel.budgets.bars["lab"]
    assert bar.value() == 10 and bar.isVisible() and not panel.budgets.empty.isVisible()
    assert panel.budgets.bars["lab"].parent() is panel.budgets
    assert panel.budgets.level("lab") == "ok"
    assert bar.palette().color(QPalette.ColorRole.Highlight).name() == BUDGET_COLORS["ok"]
    assert panel.budgets.texts["open"].text() == "no limit · $3.00 spent"
    assert not panel.budgets.bars["open"].isVisible()

    feed(85.0)
    assert bar.value() == 85 and bar.text() == "85 %"
    assert panel.budgets.level("lab") == "warning"
    assert bar.palette().color(QPalette.ColorRole.Highlight).name() == BUDGET_COLORS["warning"]
    assert panel.budgets.texts["lab"].text() == "$85.00 of $100.00"

    feed(120.0)
    assert bar.value() == 100 and bar.text() == "120 %"
    assert bar.palette().color(QPalette.ColorRole.Highlight).name() == BUDGET_COLORS["over"]
