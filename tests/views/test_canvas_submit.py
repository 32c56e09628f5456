"""Submitting from the canvas: the problems or the forecast first, then the nodes take the
colours of their jobs' states while the batch runs; the file stays unmodified."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.engine.browse import BatchFilter
from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from app.views.style import STATE_COLORS
from app.views.submit import SubmitDialog, ValidationErrorsDialog
from tests.views.canvas_helpers import Answer, example, node
from tests.views.conftest import answer_dialogs, until


@pytest.fixture
async def canvas(bridge: EngineBridge) -> AsyncIterator[CanvasWindow]:
    win = CanvasWindow(bridge)
    win.confirm_discard = lambda: Answer.Discard
    win.show()
    yield win
    win.run_watcher.stop()
    win.close()


async def test_submitting_shows_the_forecast_and_colours_the_nodes_as_jobs_end(
    canvas: CanvasWindow, tmp_path: Path
) -> None:
    assert canvas.open_file(example(tmp_path, "failure.yaml"))
    shown = answer_dialogs(canvas.submit_flow, accept=True)
    canvas.editor_actions.submit.trigger()
    await until(lambda: shown, what="the forecast")
    assert isinstance(shown[0], SubmitDialog)
    assert "4 jobs" in shown[0].details.text()

    await until(lambda: canvas.run_watcher.finished, timeout_s=30, what="the batch to end")
    assert node(canvas, "flaky").fill == STATE_COLORS["Failed"]
    assert node(canvas, "after-flaky").fill == STATE_COLORS["Cancelled"]
    assert node(canvas, "independent").fill == STATE_COLORS["Success"]
    assert node(canvas, "report").fill == STATE_COLORS["Success"]
    assert not canvas.modified  # run-time colours are not edits
    assert canvas.submitted_batch_id is not None


async def test_a_drawn_dag_with_problems_lists_them_and_submits_nothing(
    canvas: CanvasWindow, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nname: bad\njobs:\n"
        "  - {name: a, command: echo a, cpu: lots}\n"
        "  - {name: b, command: echo b, memory: tons}\n"
    )
    assert canvas.open_file(bad)
    shown = answer_dialogs(canvas.submit_flow, accept=True)
    canvas.submit()
    await until(lambda: shown, what="the problems dialog")
    dialog = shown[0]
    assert isinstance(dialog, ValidationErrorsDialog)
    assert dialog.problems.count() == 2
    assert canvas.submitted_batch_id is None
    assert await canvas.bridge.service.find_batches(BatchFilter()) == []
