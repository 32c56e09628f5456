"""The batch timeline window: opened from a batch, live while it runs, zoom, PNG and HTML."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import shiboken6
import yaml
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QGraphicsRectItem

from app.engine.timeline import OUTCOME_COLORS, Outcome
from app.views.batch_view import BatchPanel
from app.views.bridge import EngineBridge
from app.views.timeline import TimelineWindow
from tests.views.conftest import until

TWO_STEPS = """
version: 1
name: two-steps
jobs:
  - {name: first, command: 'sleep 4'}
  - {name: second, command: 'true', depends_on: [first]}
"""


@pytest.fixture(autouse=True)
def collect_garbage_on_the_main_thread() -> None:
    gc.collect()


@pytest.fixture
async def panel(bridge: EngineBridge) -> AsyncIterator[BatchPanel]:
    p = BatchPanel(bridge)
    p.resize(1000, 700)
    p.show()
    yield p
    for window in list(p.timelines):
        window.close()
    p.close()
    await until(lambda: bridge.n_pending_calls == 0, what="the panel's calls to end")
    shiboken6.delete(p)


def bars(window: TimelineWindow) -> list[QGraphicsRectItem]:
    items = window.scene.items()
    return [i for i in items if isinstance(i, QGraphicsRectItem) and i.data(0)]


def outcomes(window: TimelineWindow) -> list[str]:
    return sorted(str(item.data(0)) for item in bars(window))


async def test_the_timeline_opens_from_a_batch_and_follows_it_live(
    bridge: EngineBridge, panel: BatchPanel, tmp_path: Path
) -> None:
    service = bridge.service
    spec = await service.parse_dag_data(yaml.safe_load(TWO_STEPS), source="t")
    batch_id = await service.submit(spec)
    assert not panel.timeline_button.isEnabled()
    panel.show_batch(batch_id)
    assert panel.timeline_button.isEnabled()
    panel.timeline_button.click()
    (window,) = panel.timelines
    await until(lambda: outcomes(window) == ["running"], what="the first job's running bar")
    assert "live" in window.summary.text()
    first = bars(window)[0]
    assert first.brush().color() == QColor(OUTCOME_COLORS[Outcome.RUNNING])
    assert "first (job 1, attempt 1)" in first.toolTip()
    await until(lambda: outcomes(window) == ["success", "success"], what="both bars, done")
    assert "live" not in window.summary.text()
    assert "running" in window.legend.text() and "staging" in window.legend.text()

    timeline = window.timeline
    assert timeline is not None
    before = window.bar_rect(timeline.bars[0]).width()
    window.zoom_by(2.0)
    assert window.bar_rect(timeline.bars[0]).width() == pytest.approx(before * 2, rel=0.01)
    window.fit()
    assert window.bar_rect(timeline.bars[0]).width() == pytest.approx(before, rel=0.01)

    png, page = tmp_path / "t.png", tmp_path / "t.html"
    answers = iter([str(png), str(page)])
    window.ask_save_path = lambda *_args: next(answers)
    window.png_action.trigger()
    window.html_action.trigger()
    image = QImage(str(png))
    assert not image.isNull() and image.width() > 300
    success = QColor(OUTCOME_COLORS[Outcome.SUCCESS])
    centre = window.bar_rect(timeline.bars[0]).center().toPoint()
    assert image.pixelColor(centre) == success
    assert page.read_text().count('class="bar"') == 2
    assert window.statusBar().currentMessage() == f"Exported {page}"
