"""Small things a user sees: a cost plot with no spend, forecast text in both palettes, what
the canvas colours mean (a running job is not the colour of a bash job)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from PySide6.QtGui import QColor, QPalette
from pytestqt.qtbot import QtBot

from app.models.spec import parse_dag_text
from app.views import style
from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from app.views.canvas.items import KIND_COLORS
from app.views.dashboard import DashboardPanel
from app.views.submit import SubmitDialog
from tests.views.canvas_helpers import open_canvas
from tests.views.conftest import EXAMPLES, until


def _luminance(color: QColor) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return (
        0.2126 * channel(color.redF())
        + 0.7152 * channel(color.greenF())
        + 0.0722 * channel(color.blueF())
    )


def contrast(a: QColor, b: QColor) -> float:
    """The WCAG contrast ratio of two colours (1 … 21)."""
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


async def test_the_cost_plot_with_no_spend_shows_zero_to_one(
    bridge: EngineBridge, qtbot: QtBot
) -> None:
    panel = DashboardPanel(bridge)
    qtbot.addWidget(panel)
    panel.resize(1000, 900)
    panel.show()
    finished: list[object] = []
    bridge.batch_finished.connect(finished.append)
    text = "version: 1\njobs: [{name: a, command: 'true'}]\n"
    await bridge.service.submit(parse_dag_text(text, source="t.yaml"))  # a free pool: $0
    await until(lambda: finished, timeout_s=30, what="the batch to finish")
    await until(lambda: bool(panel.series("cost")), what="a cost series")
    panel.refresh_now()
    assert all(v == 0 for _, values in panel.series("cost").values() for v in values)
    _, (low, high) = panel.plots["cost"].viewRange()
    assert low == pytest.approx(0, abs=1e-9) and high == pytest.approx(1, abs=0.05)


@pytest.mark.parametrize("dark", [False, True])
async def test_the_forecast_and_its_assumptions_are_readable(
    bridge: EngineBridge, dark: bool
) -> None:
    spec = await bridge.service.load_dag(EXAMPLES / "per-sample.yaml")
    dialog = SubmitDialog(await bridge.service.forecast(spec))
    if dark:
        dialog.setPalette(style._dark_palette())
    dialog.show()
    assert "Assumptions:" in dialog.details.text()
    group = (
        QPalette.ColorGroup.Active if dialog.details.isEnabled() else QPalette.ColorGroup.Disabled
    )
    palette = dialog.details.palette()
    text = palette.color(group, dialog.details.foregroundRole())
    background = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Window)
    assert contrast(text, background) >= 4.5
    dialog.close()


@pytest.fixture
async def canvas(bridge: EngineBridge) -> AsyncIterator[CanvasWindow]:
    async with open_canvas(bridge) as win:
        yield win


async def test_running_is_not_the_colour_of_a_kind_and_a_legend_says_so(
    canvas: CanvasWindow,
) -> None:
    running = QColor(style.STATE_COLORS["Running"])
    for kind, color in KIND_COLORS.items():
        rgb = zip(QColor(color).getRgb()[:3], running.getRgb()[:3], strict=True)
        distance = sum(abs(a - b) for a, b in rgb)
        assert distance > 120, f"{kind} jobs look like running ones"
    legend = canvas.legend.text()
    assert "bash job" in legend and "container job" in legend and "running" not in legend
    canvas.watch_batch(1)
    legend = canvas.legend.text()
    assert "running" in legend and style.STATE_COLORS["Running"] in legend
