"""The main window as a user meets it: drop a DAG, read the forecast, watch it finish; errors,
the status bar, settings, shortcuts, and closing the window (workers stopped or handed over)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from app.engine import lease
from app.engine.browse import BatchFilter
from app.engine.service import EngineService
from app.models.db import open_database
from app.views.app import Desktop
from app.views.bridge import EngineBridge
from app.views.main_window import TAB_DASHBOARD, TAB_POOLS, MainWindow
from app.views.settings import DesktopSettings, qsettings
from app.views.submit import SubmitDialog, ValidationErrorsDialog
from tests.views.conftest import EXAMPLES, answer_dialogs, until


@pytest.fixture
async def window(bridge: EngineBridge) -> AsyncIterator[MainWindow]:
    win = MainWindow(bridge, DesktopSettings())
    win.show()
    yield win
    win.may_close = True
    win.close()


def _drop(window: MainWindow, path: Path) -> None:
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPoint(10, 10),
        Qt.DropAction.CopyAction,
        data,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)


async def test_dropping_a_dag_shows_its_forecast_then_runs_it(
    window: MainWindow, service: EngineService
) -> None:
    shown = answer_dialogs(window.submit_flow, accept=True)
    _drop(window, EXAMPLES / "diamond.yaml")
    await until(lambda: shown, what="the submit dialog")
    dialog = shown[0]
    assert isinstance(dialog, SubmitDialog)
    assert "Expected cost" in dialog.cost.text()
    assert "4 jobs" in dialog.details.text()

    await until(lambda: window.notifier.shown, timeout_s=30, what="the batch to finish")
    assert window.notifier.shown[0][0] == "Batch 1 succeeded"
    batches = await service.find_batches(BatchFilter())
    assert [(b.batch.name, b.batch.state) for b in batches] == [("diamond", "success")]


async def test_an_invalid_dag_lists_every_problem_and_stores_nothing(
    window: MainWindow, service: EngineService, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nname: bad\njobs:\n"
        "  - name: a\n    command: echo a\n    cpu: lots\n"
        "  - name: b\n    command: echo b\n    depends_on: [nope]\n"
    )
    shown = answer_dialogs(window.submit_flow, accept=True)
    window.submit_flow.start(str(bad))
    await until(lambda: shown, what="the problems dialog")
    dialog = shown[0]
    assert isinstance(dialog, ValidationErrorsDialog)
    problems = [dialog.problems.item(i).text() for i in range(dialog.problems.count())]
    assert len(problems) == 2
    assert any("bad.yaml" in p and "'a'" in p and "cpu" in p for p in problems)
    assert any("'b'" in p and "nope" in p for p in problems)
    assert await service.find_batches(BatchFilter()) == []


async def test_declining_the_forecast_submits_nothing(
    window: MainWindow, service: EngineService
) -> None:
    shown = answer_dialogs(window.submit_flow, accept=False)
    window.submit_flow.start(str(EXAMPLES / "diamond.yaml"))
    await until(lambda: shown, what="the submit dialog")
    await asyncio.sleep(0.3)
    assert await service.find_batches(BatchFilter()) == []


async def test_status_bar_shows_database_driver_and_cores(
    window: MainWindow, lb_home: Path
) -> None:
    status = window.status
    assert "labbatch.db" in status.database.text()
    assert status.lease.text() == "driver: this desktop"
    await until(lambda: "/ 2 in use" in status.cores.text(), what="a sample with the worker up")
    assert status.cores.text() == "cores: 0 / 2 in use"
    assert status.spend.text() == "today: $0.00"


async def test_settings_persist_and_size_the_local_pool(
    window: MainWindow, service: EngineService, tmp_path: Path
) -> None:
    wanted = DesktopSettings(
        user="ada",
        local_workers=2,
        local_cores=1.0,
        local_price_per_core_hour_usd=0.05,
        notifications=False,
    )
    window.apply_settings(wanted)
    assert DesktopSettings.load() == wanted
    assert qsettings().fileName().startswith(str(tmp_path))  # never the tester's own settings
    assert window.notifier.enabled is False

    async def stored() -> tuple[int, int, Decimal | None]:
        pool = await service.default_pool()
        return pool.max_instances, pool.worker_cores_mcpu, pool.price_per_core_hour_usd

    deadline = asyncio.get_running_loop().time() + 5
    while await stored() != (2, 1000, Decimal("0.05")):
        assert asyncio.get_running_loop().time() < deadline, await stored()
        await asyncio.sleep(0.05)


async def test_keyboard_shortcuts_switch_views(window: MainWindow, qtbot: object) -> None:
    assert window.show_pools_action.shortcut().toString() == "Ctrl+2"
    assert window.submit_action.shortcut().toString() == "Ctrl+O"
    window.show_pools_action.trigger()
    assert window.tabs.currentIndex() == TAB_POOLS
    window.show_dashboard_action.trigger()
    assert window.tabs.currentIndex() == TAB_DASHBOARD


def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split()]


def _worker_alive(name: str) -> bool:
    return bool(_pids(f"--name {name} "))


async def _live_worker_names(service: EngineService) -> list[str]:
    """The workers that are up (not still booting)."""
    rows = await service.pools()
    return [i.instance.name for row in rows for i in row.instances if i.instance.state == "active"]


async def test_closing_the_window_stops_the_local_workers(lb_home: Path) -> None:
    desktop = Desktop(DesktopSettings())
    window = await desktop.open(None, "tester")
    assert desktop.service is not None
    service = desktop.service
    names: list[str] = []

    async def have_worker() -> bool:
        names[:] = await _live_worker_names(service)
        return bool(names)

    deadline = asyncio.get_running_loop().time() + 20
    while not await have_worker():
        assert asyncio.get_running_loop().time() < deadline, "no local worker started"
        await asyncio.sleep(0.1)
    assert _worker_alive(names[0])

    window.close()
    await desktop.wait_closed()
    assert not window.isVisible()
    await until(lambda: not _worker_alive(names[0]), timeout_s=10, what="the worker to stop")


async def test_keep_pools_running_hands_the_workers_to_labbatch_serve(
    lb_home: Path, tmp_path: Path
) -> None:
    dag = tmp_path / "nap.yaml"
    dag.write_text("version: 1\nname: nap\njobs:\n  - name: nap\n    command: sleep 2\n")
    desktop = Desktop(DesktopSettings(keep_pools_running=True))
    window = await desktop.open(None, "tester")
    assert desktop.service is not None
    service = desktop.service
    batch_id = await service.submit(await service.load_dag(dag))
    deadline = asyncio.get_running_loop().time() + 20
    while (await service.job_page(batch_id, offset=0, limit=1))[0].job.state != "Running":
        assert asyncio.get_running_loop().time() < deadline, "the job never started"
        await asyncio.sleep(0.05)
    names = await _live_worker_names(service)

    window.close()
    await desktop.wait_closed()
    db = await open_database(None)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            holder = await lease.current_holder(db)
            batch = await EngineService(db, user="tester", drive=False).batch(batch_id)
            if batch.batch.complete:
                break
            assert asyncio.get_running_loop().time() < deadline, "serve did not finish the job"
            await asyncio.sleep(0.1)
        assert batch.batch.state == "success"  # the job was not killed by the hand-over
        assert holder is not None  # labbatch serve holds the lease
        assert _worker_alive(names[0])  # the same worker, adopted
    finally:
        await db.close()
        for pid in _pids(f"app serve --db .*{lb_home}"):
            os.kill(pid, signal.SIGTERM)
        await until(lambda: not _worker_alive(names[0]), timeout_s=15, what="serve to stop")


def test_the_desktop_explains_a_database_it_cannot_open(lb_home: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    result = subprocess.run(
        [sys.executable, "-m", "app", "--db", "postgresql://nobody@127.0.0.1:9/none"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot open the database PostgreSQL nobody@127.0.0.1/none" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["hailtop_style.py", "pipeline.graphml", "pipeline.dot"])
async def test_importing_a_script_or_graph_draws_it_in_a_canvas(
    window: MainWindow, name: str
) -> None:
    source = Path(__file__).parents[1] / "data" / name
    expected = await window.bridge.service.import_dag(source)
    window.import_into_canvas(str(source))
    assert window.status.currentMessage().startswith("Importing")
    await until(lambda: window.canvases, timeout_s=30, what="the canvas window")
    await until(lambda: not window.status.currentMessage(), what="'Importing…' to clear")
    canvas = window.canvases[0]
    drawn = {canvas.document.name(n) for n in canvas.document.node_ids}
    assert drawn == {job["name"] for job in expected.data["jobs"]}
    assert len(canvas.scene.node_items) == len(drawn) >= 2
    assert len(canvas.document.edges) == sum(
        len(job.get("depends_on", ())) for job in expected.data["jobs"]
    )
    assert not canvas.modified
    canvas.close()  # nothing to save: no question asked
    await until(lambda: not window.canvases, what="the canvas to close")


async def test_closing_asks_about_a_canvas_with_unsaved_changes(window: MainWindow) -> None:
    canvas = window.new_canvas()
    canvas.view.add_node("bash", canvas.view.visible_scene_rect().center())
    assert canvas.modified
    answers: list[str] = []

    def keep() -> object:
        answers.append("cancel")
        return QMessageBox.StandardButton.Cancel

    canvas.confirm_discard = keep  # type: ignore[assignment]
    window.close()
    assert answers == ["cancel"]
    assert window.isVisible() and canvas.isVisible()  # nothing closed, nothing lost
    canvas.confirm_discard = lambda: QMessageBox.StandardButton.Discard  # type: ignore[assignment]
    canvas.close()


async def test_deleting_the_open_batch_clears_the_batch_view(
    window: MainWindow, service: EngineService
) -> None:
    batch_id = await service.submit(await service.load_dag(EXAMPLES / "diamond.yaml"))
    await until(lambda: bool(window.notifier.shown), timeout_s=30, what="the batch to end")
    window.open_batch(batch_id)
    await until(lambda: window.batch_view.model.rowCount() == 4, what="the jobs")
    window.batches.confirm = lambda *_args: True  # type: ignore[assignment]
    await until(lambda: window.batches.select_batch(batch_id), what="the row")
    window.batches.delete_selected()
    await until(lambda: window.batch_view.batch_id is None, what="the view to clear")
    assert window.batch_view.model.rowCount() == 0
    assert "No batch open" in window.batch_view.header.text()
