"""The DAG editor's property panel and files, driven like a user: fields checked as you type,
one undo step per edit, save and reopen to the same text, unsaved-changes prompts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLineEdit

from app.models.spec import load_dag_file
from app.views.bridge import EngineBridge
from app.views.canvas import CanvasWindow
from tests.views.canvas_helpers import (
    Answer,
    click,
    drop_kind,
    edges,
    example,
    names,
    node,
    open_canvas,
    point,
    redo,
    undo,
)


@pytest.fixture
async def window(bridge: EngineBridge) -> AsyncIterator[CanvasWindow]:
    async with open_canvas(bridge) as win:
        yield win


@pytest.fixture
async def diamond(window: CanvasWindow, tmp_path: Path) -> CanvasWindow:
    assert window.open_file(example(tmp_path, "diamond.yaml"))
    return window


# ---------------------------------------------------------------------------------------------
# The property panel


async def test_fields_are_checked_as_you_type_and_a_valid_edit_is_one_undo_step(
    diamond: CanvasWindow,
) -> None:
    window, view, panel = diamond, diamond.view, diamond.properties
    left = node(window, "left")
    click(view, point(view, left))
    assert panel.node_id == left.node_id
    assert "tr a-z A-Z" in panel.editors["command"].toPlainText()
    cpu = panel.editors["cpu"]
    assert isinstance(cpu, QLineEdit)

    QTest.keyClicks(cpu, "3")
    assert "is not a valid cpu" in panel.problems["cpu"]
    assert "border" in cpu.styleSheet() and "is not a valid cpu" in cpu.toolTip()
    assert "CPU: " in panel.problem_label.text()
    QTest.keyClick(cpu, Qt.Key.Key_Return)
    assert "cpu" not in window.document.fields(left.node_id) and not window.modified

    cpu.selectAll()
    QTest.keyClicks(cpu, "2")
    assert "cpu" not in panel.problems and cpu.styleSheet() == ""
    QTest.keyClick(cpu, Qt.Key.Key_Return)
    assert window.document.fields(left.node_id)["cpu"] == 2
    assert window.undo_stack.count() == 1 and window.modified

    undo(window)
    assert "cpu" not in window.document.fields(left.node_id) and cpu.text() == ""
    redo(window)
    assert window.document.fields(left.node_id)["cpu"] == 2 and cpu.text() == "2"


async def test_renaming_is_one_step_keeps_the_edges_and_the_file_follows(
    diamond: CanvasWindow, tmp_path: Path
) -> None:
    window, view, panel = diamond, diamond.view, diamond.properties
    click(view, point(view, node(window, "prepare")))
    name = panel.editors["name"]
    assert isinstance(name, QLineEdit)
    name.selectAll()
    QTest.keyClicks(name, "set")
    panel.commit()  # a pause in typing
    QTest.keyClicks(name, "up")
    QTest.keyClick(name, Qt.Key.Key_Return)
    assert names(window)[0] == "setup" and node(window, "setup").title == "setup"
    assert window.undo_stack.count() == 1  # the typing merged into one step
    assert ("setup", "left") in edges(window)

    name.selectAll()
    QTest.keyClicks(name, "left")  # taken by another job
    assert panel.problems["name"] == "another job is named 'left'"
    QTest.keyClick(name, Qt.Key.Key_Escape)

    path = tmp_path / "renamed.yaml"
    assert window.save(path)
    assert [job.depends_on for job in load_dag_file(path).jobs][1] == ("setup",)
    undo(window)
    assert names(window)[0] == "prepare" and name.text() == "prepare"


async def test_env_and_checkbox_fields(diamond: CanvasWindow) -> None:
    window, view, panel = diamond, diamond.view, diamond.properties
    right = node(window, "right")
    click(view, point(view, right))
    env = panel.editors["env"]
    env.setFocus()
    QTest.keyClicks(env, "no equals sign")
    assert panel.problems["env"] == "line 1: expected NAME=value, got 'no equals sign'"
    env.selectAll()
    QTest.keyClicks(env, "SAMPLE=a")
    panel.commit()
    assert window.document.fields(right.node_id)["env"] == {"SAMPLE": "a"}

    panel.editors["always_run"].click()
    assert window.document.fields(right.node_id)["always_run"] is True
    assert window.undo_stack.count() == 2
    undo(window)
    assert "always_run" not in window.document.fields(right.node_id)
    assert not panel.editors["always_run"].isChecked()


# ---------------------------------------------------------------------------------------------
# Files


async def test_save_then_reopen_gives_the_same_file(window: CanvasWindow, tmp_path: Path) -> None:
    assert window.open_file(example(tmp_path, "diamond.yaml"))  # no layout: laid out, clean
    assert window.windowTitle() == "diamond.yaml — LabBatch DAG editor"
    assert not window.modified and window.problems_label.text() == "Valid"
    drop_kind(window, "container", QPoint(400, 100))
    assert window.windowTitle() == "diamond.yaml* — LabBatch DAG editor"

    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    assert window.save(first)
    assert window.windowTitle() == "first.yaml — LabBatch DAG editor" and not window.modified
    assert window.open_file(first)
    assert names(window)[-1] == "container"
    assert window.save(second)
    assert first.read_text() == second.read_text()
    assert "layout:" in first.read_text()
    assert [job.name for job in load_dag_file(first).jobs][-1] == "container"
    recent = [a.text() for a in window.editor_actions.recent_menu.actions()]
    assert recent[:2] == ["second.yaml", "first.yaml"]


async def test_unsaved_changes_are_saved_discarded_or_kept_as_the_user_says(
    diamond: CanvasWindow, tmp_path: Path
) -> None:
    window = diamond
    answers = [Answer.Cancel]
    window.confirm_discard = lambda: answers.pop(0)
    drop_kind(window, "bash", QPoint(100, 100))
    window.editor_actions.new.trigger()
    assert len(names(window)) == 5 and window.modified  # cancelled

    answers.append(Answer.Cancel)
    window.close()
    assert window.isVisible()  # closing asks too

    answers.append(Answer.Save)
    window.editor_actions.new.trigger()  # saved where it came from
    assert names(window) == [] and window.windowTitle() == "Untitled — LabBatch DAG editor"
    assert "name: job" in (tmp_path / "diamond.yaml").read_text()

    drop_kind(window, "bash", QPoint(100, 100))
    path = tmp_path / "kept.yaml"
    window.ask_save_path = lambda: str(path)
    answers.append(Answer.Save)
    assert window.open_file(example(tmp_path, "failure.yaml"))  # untitled: asks where
    assert names(window) == ["flaky", "after-flaky", "report", "independent"]
    assert "name: job" in path.read_text()

    drop_kind(window, "bash", QPoint(100, 100))
    answers.append(Answer.Discard)
    window.editor_actions.new.trigger()
    assert names(window) == [] and not answers  # asked each time there were changes
    window.editor_actions.new.trigger()  # no changes: nothing to ask


async def test_a_broken_file_is_not_opened_and_says_where(
    diamond: CanvasWindow, tmp_path: Path
) -> None:
    window = diamond
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\njobs:\n  - name: a\n    command: x\n    depends_on: [ghost]\n")
    assert not window.open_file(path)
    assert f"{path}:5: job 'a'" in window.last_error and "unknown job 'ghost'" in window.last_error
    assert len(names(window)) == 4 and window.path and window.path.endswith("diamond.yaml")

    path.write_text("version: 1\njobs:\n  - name: a\n    command: x\n    cpu: 3\n")
    assert window.open_file(path)  # opens: the problem is in a value, shown on the job
    assert window.problems_label.text() == "1 problem"
    assert "'cpu': 3 is not a valid cpu" in window.problems_label.toolTip()
    assert node(window, "a").invalid
    click(window.view, point(window.view, node(window, "a")))
    assert "is not a valid cpu" in window.properties.problems["cpu"]  # marked at the field


async def test_imported_data_is_laid_out_and_saved_where_the_user_says(
    window: CanvasWindow, tmp_path: Path
) -> None:
    data = {
        "version": 1,
        "name": "imported",
        "jobs": [
            {"name": "fetch", "command": "echo fetch"},
            {"name": "align", "command": "echo align", "depends_on": ["fetch"]},
        ],
    }
    assert window.load_data(data, source="pipeline.py")
    assert names(window) == ["fetch", "align"] and edges(window) == {("fetch", "align")}
    assert node(window, "fetch").x() < node(window, "align").x()
    assert window.windowTitle() == "Untitled — LabBatch DAG editor"

    path = tmp_path / "imported.yaml"
    window.ask_save_path = lambda: str(path)
    window.editor_actions.save.trigger()
    assert load_dag_file(path).name == "imported"

    cyclic = {**data, "jobs": [{**data["jobs"][0], "depends_on": ["align"]}, data["jobs"][1]]}
    assert not window.load_data(cyclic, source="cyclic.py")
    assert "cycle: fetch -> align -> fetch" in window.last_error
    assert names(window) == ["fetch", "align"]  # nothing half-imported
