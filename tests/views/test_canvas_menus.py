"""The canvas window's keys and File menu as a user meets them: redo on Ctrl+Shift+Z, every
shortcut bound once, Import in the File menu with a status message that ends with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QPainterPathStroker
from PySide6.QtTest import QTest

from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from tests.views.canvas_helpers import drop_kind, names, node, open_canvas
from tests.views.conftest import until

DATA = Path(__file__).parents[1] / "data"
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT_CTRL = CTRL | Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
async def window(bridge: EngineBridge) -> AsyncIterator[CanvasWindow]:
    async with open_canvas(bridge) as win:
        win.activateWindow()
        yield win


async def test_ctrl_shift_z_redoes_through_ten_edits(window: CanvasWindow) -> None:
    warnings: list[str] = []
    previous = qInstallMessageHandler(
        lambda kind, _ctx, text: warnings.append(text) if kind != QtMsgType.QtDebugMsg else None
    )
    try:
        for k in range(10):
            drop_kind(window, "bash", QPoint(100 + 90 * (k % 5), 100 + 120 * (k // 5)))
        assert len(names(window)) == 10 and window.undo_stack.count() == 10
        for _ in range(10):
            QTest.keyClick(window.view, Qt.Key.Key_Z, CTRL)
        assert names(window) == [] and not window.modified
        for _ in range(10):
            QTest.keyClick(window.view, Qt.Key.Key_Z, SHIFT_CTRL)
        assert len(names(window)) == 10 and window.undo_stack.index() == 10
    finally:
        qInstallMessageHandler(previous)
    assert not [w for w in warnings if "Ambiguous shortcut" in w]


async def test_no_key_is_bound_twice_in_the_canvas_window(window: CanvasWindow) -> None:
    seen: dict[str, str] = {}
    for action in window.findChildren(type(window.editor_actions.redo)):
        for sequence in action.shortcuts():
            key = sequence.toString()
            assert key not in seen, f"{key} is bound to {seen.get(key)} and {action.text()}"
            seen[key] = action.text()
    assert "Ctrl+Shift+Z" in seen and "Ctrl+Z" in seen


async def test_the_file_menu_imports_a_graph_and_the_status_clears(window: CanvasWindow) -> None:
    file_menu = window.menuBar().actions()[0].menu()
    texts = [a.text() for a in file_menu.actions()]
    assert "&Open…" in texts and "&Import…" in texts
    window.ask_import_path = lambda: str(DATA / "pipeline.dot")
    window.editor_actions.import_.trigger()
    assert window.statusBar().currentMessage() == "Importing pipeline.dot…"
    await until(lambda: len(names(window)) >= 2, timeout_s=30, what="the imported graph")
    await until(lambda: window.statusBar().currentMessage() == "", what="the status to clear")
    assert not window.modified


async def test_a_drawn_graph_without_commands_opens_and_its_long_edge_goes_around(
    window: CanvasWindow, tmp_path: Path
) -> None:
    dot = tmp_path / "g.dot"
    dot.write_text("digraph g { fetch -> qc -> report; fetch -> report }\n")
    window.import_file(dot)
    await until(lambda: len(names(window)) == 3, timeout_s=30, what="the imported graph")
    assert not window.last_error
    assert {p.job for p in window.problems} == {"fetch", "qc", "report"}  # flagged, not refused
    assert all(p.field == "command" for p in window.problems)
    assert window.problems_label.text() == "3 problems"

    skip = window.scene.edge_items[(node(window, "fetch").node_id, node(window, "report").node_id)]
    qc = node(window, "qc").sceneBoundingRect()
    stroker = QPainterPathStroker()
    stroker.setWidth(2)
    assert not stroker.createStroke(skip.path()).intersects(qc)  # not through the middle job
    assert skip.path().pointAtPercent(0) == node(window, "fetch").output_point()
