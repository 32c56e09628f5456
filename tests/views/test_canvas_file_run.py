"""Files after a run on the canvas: ports whose files exist are coloured, and a double-click
on an output port shows its size, location and first lines, with Save as…"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PySide6.QtTest import QTest

from app.engine.service import EngineService
from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from app.views.canvas.file_ports import PortKey
from tests.views.canvas_helpers import LEFT, NO_KEYS, open_canvas
from tests.views.conftest import EXAMPLES, until


def file_size(path: str) -> int:
    return Path(path).stat().st_size


def same_text(a: Path, b: Path) -> bool:
    return a.read_text() == b.read_text()


@pytest.fixture
async def window(bridge: EngineBridge) -> AsyncIterator[CanvasWindow]:
    async with open_canvas(bridge, 1100, 700) as win:
        yield win


async def test_a_run_colours_ports_and_an_output_opens_with_its_first_lines(
    window: CanvasWindow, service: EngineService, tmp_path: Path
) -> None:
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    path = tmp_path / "files.yaml"
    shutil.copyfile(EXAMPLES / "files.yaml", path)
    assert window.open_file(path)
    files = window.scene.files
    document = window.document
    summary_key = PortKey(document.node_named("report"), "out", "summary")
    assert files.ports[summary_key].exists is None  # before a run: no colour
    batch_id = await service.submit(await service.load_dag(path))
    window.run_watcher.watch(batch_id)
    await until(lambda: window.run_watcher.finished, what="the batch to end", timeout_s=90)
    await until(lambda: files.ports[summary_key].exists is True, what="the ports to colour")
    counts_in = PortKey(document.node_named("report"), "in", "counts")
    assert files.ports[counts_in].exists is True  # an input is coloured by what it reads
    written = files.file_nodes[PortKey(None, "out", "0")]  # results/summary.txt
    await until(lambda: written.exists is True, what="the batch output to colour")
    # double-click the summary's port: its size, where it is, its first lines
    view = window.view
    window.view.fit_all()
    at = view.mapFromScene(files.ports[summary_key].scenePos())
    QTest.mouseDClick(view.viewport(), LEFT, NO_KEYS, at)
    await until(lambda: window.file_run.dialog is not None, what="the output's dialog")
    dialog = window.file_run.dialog
    assert dialog is not None
    assert "3-mers in the reference" in dialog.preview.toPlainText()
    where = dialog.files[0].where
    assert where in dialog.where_label.text()
    assert f"{file_size(where)}B" in dialog.where_label.text()
    # Save as… copies it where the user says, through the engine
    dest = tmp_path / "saved" / "summary.txt"
    window.file_run.ask_save_path = lambda ref: str(dest)
    dialog.save_button.click()
    await until(lambda: dest.is_file(), what="the copy")
    assert same_text(dest, Path(where))
    dialog.close()
    # another DAG opened: its ports show no run, even where names match
    assert window.open_file(path)
    assert window.run_watcher.batch_id is None
    assert all(p.exists is None for p in window.scene.files.ports.values())
