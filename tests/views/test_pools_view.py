"""The pools panel: live workers with their states, one-click scaling, limits, drain."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox, QPushButton
from sqlalchemy import insert

from app.engine.browse import PoolRow
from app.engine.service import EngineService
from app.models.tables import Instance
from app.views import style
from app.views.bridge import EngineBridge
from app.views.pools import ERROR_COLOR, PoolsPanel
from tests.views.conftest import until


@contextlib.asynccontextmanager
async def open_panel() -> AsyncIterator[tuple[PoolsPanel, EngineService]]:
    """A started engine and a shown panel, opened and closed inside the test body.

    Not fixtures: pytest-qt processes Qt events between setup and call, outside the running
    asyncio loop, and engine tasks that step there die with "no running event loop" (the
    starting worker then never becomes active). The local pool follows its stored settings
    (the shared `service` fixture pins it to one worker), with 1-core workers, up to 3.
    """
    service = await EngineService.open(None, user="tester")
    await service.set_pool("local", worker_cores_mcpu=1000, max_instances=3, max_live_instances=3)
    await service.start()
    bridge = EngineBridge(service)
    errors: list[str] = []
    bridge.internal_error.connect(errors.append)
    panel = PoolsPanel(bridge)
    panel.show()
    try:
        yield panel, service
    finally:
        panel.hide()  # not close(): closing the last window would quit the Qt (and asyncio) loop
        panel.deleteLater()
        await bridge.close()
        await service.close()
    assert not errors, f"internal errors reached the user: {errors}"


def states(panel: PoolsPanel) -> list[str]:
    table = panel.instances
    return [table.item(r, 1).text() for r in range(table.rowCount())]


def pool_cell(panel: PoolsPanel, name: str, column: int) -> str:
    table = panel.pool_list
    for r in range(table.rowCount()):
        if table.item(r, 0).text() == name:
            return table.item(r, column).text()
    raise AssertionError(f"no row for pool {name}")


async def local(service: EngineService) -> PoolRow:
    return next(row for row in await service.pools() if row.pool.name == "local")


async def click(button: QPushButton) -> None:
    await until(button.isEnabled, what=f"{button.text()} to be enabled")
    button.click()


async def test_shows_the_pools_and_the_live_workers(lb_home: Path) -> None:
    async with open_panel() as (panel, _service):
        await until(lambda: states(panel) == ["active"], what="the standing worker")
        assert panel.selected_pool == "local"
        assert pool_cell(panel, "local", 1) == "local"
        assert pool_cell(panel, "local", 2) == "1 / 3"
        assert pool_cell(panel, "local", 3) == "0 / 1"
        state = panel.instances.item(0, 1)
        assert state.foreground().color() == style.state_color("active")
        row = [panel.instances.item(0, c).text() for c in range(panel.instances.columnCount())]
        assert row[0].startswith("local-")
        assert row[2:5] == ["1", "0", "1"]  # cores, used, free
        assert row[5].endswith("s") and row[6].startswith("$")
        assert row[8] == "yes"  # the min-instances worker is standing
        assert panel.max_live_instances.value() == 3 and panel.worker_cores.value() == 1.0

        panel.select_pool("job-private")  # another pool; it stays chosen across refreshes
        assert panel.selected_pool == "job-private" and states(panel) == []
        assert panel.max_instances.value() == 4 and panel.price.isEnabled()
        refreshed: list[bool] = []
        panel.refreshed.connect(lambda: refreshed.append(True))
        panel.refresh()
        await until(lambda: refreshed, what="a refresh")
        assert panel.selected_pool == "job-private"


async def test_plus_and_minus_add_and_remove_a_worker(lb_home: Path) -> None:
    async with open_panel() as (panel, service):
        await until(lambda: states(panel) == ["active"], what="the standing worker")
        await click(panel.add_button)
        await until(lambda: len(states(panel)) == 2, what="a second row")
        assert panel.message.text() == "Adding a worker to local…"
        assert not panel.message_is_error
        await until(lambda: states(panel) == ["active", "active"], what="the new worker to start")
        assert (await local(service)).n_live == 2

        await click(panel.remove_button)
        await until(lambda: states(panel) == ["active"], what="one worker to retire")
        assert panel.message.text() == "Removing a worker from local…"
        assert (await local(service)).n_live == 1


async def test_scale_to_n_and_a_refusal_beyond_the_limit(lb_home: Path) -> None:
    async with open_panel() as (panel, service):
        await until(lambda: states(panel) == ["active"], what="the standing worker")
        panel.scale_to.setValue(5)
        await click(panel.scale_button)
        await until(lambda: panel.message_is_error, what="the refusal")
        assert "Max live instances is 3" in panel.message.text()
        assert "Limits form above" in panel.message.text()
        assert ERROR_COLOR in panel.message.styleSheet()
        assert (await local(service)).n_live == 1

        panel.scale_to.setValue(3)
        assert panel.scale_button.text() == "Scale to 3"
        await click(panel.scale_button)
        await until(lambda: panel.message.text().startswith("local is held at 3"), what="the ack")
        assert not panel.message_is_error and ERROR_COLOR not in panel.message.styleSheet()
        await until(lambda: states(panel) == ["active"] * 3, what="three active workers")
        assert pool_cell(panel, "local", 2) == "3 / 3"
        assert (await local(service)).n_live == 3


async def test_apply_changes_the_stored_limits_and_refuses_bad_ones(lb_home: Path) -> None:
    async with open_panel() as (panel, service):
        await until(lambda: panel.selected_pool == "local", what="the pools")
        panel.min_instances.setValue(0)
        panel.max_instances.setValue(4)
        panel.max_live_instances.setValue(2)
        panel.worker_cores.setValue(0.5)
        panel.price.setValue(0.05)
        await click(panel.apply_button)
        await until(lambda: panel.message.text() == "Saved the settings of local.", what="the ack")
        pool = (await local(service)).pool
        assert (pool.min_instances, pool.max_instances, pool.max_live_instances) == (0, 4, 2)
        assert pool.worker_cores_mcpu == 500
        assert pool.price_per_core_hour_usd == Decimal("0.05")
        await until(lambda: pool_cell(panel, "local", 2).endswith("/ 2"), what="the new limit")

        # a refresh never overwrites what the user is typing
        panel.max_instances.setValue(7)
        refreshed: list[bool] = []
        panel.refreshed.connect(lambda: refreshed.append(True))
        panel.refresh()
        await until(lambda: refreshed, what="a refresh")
        assert panel.max_instances.value() == 7

        panel.min_instances.setValue(3)  # more than max live instances (2)
        panel.price.setValue(0)
        await click(panel.apply_button)
        await until(lambda: panel.message_is_error, what="the refusal")
        assert "min instances <= max live instances" in panel.message.text()
        pool = (await local(service)).pool
        assert (pool.min_instances, pool.max_instances, pool.max_live_instances) == (0, 4, 2)
        assert pool.price_per_core_hour_usd == Decimal("0.05")


async def test_drain_asks_first_then_retires_every_worker(
    lb_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_panel() as (panel, service):
        await until(lambda: states(panel) == ["active"], what="the standing worker")
        questions: list[str] = []

        def answer(reply: QMessageBox.StandardButton) -> Any:
            def question(_parent: object, _title: str, text: str, *_: object) -> Any:
                questions.append(text)
                return reply

            return question

        monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Cancel))
        await click(panel.drain_button)
        assert "raise the pool's max live instances" in questions[0]
        assert (await local(service)).pool.max_live_instances == 3  # cancelled: nothing changed

        monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
        await click(panel.drain_button)
        await until(lambda: states(panel) == [], what="the workers to retire")
        assert panel.message.text().startswith("Draining local")
        assert panel.max_live_instances.value() == 0 and panel.min_instances.value() == 0
        assert pool_cell(panel, "local", 2) == "0 / 0"
        assert (await local(service)).n_live == 0


async def test_a_pool_problem_shows_inline(lb_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_panel() as (panel, _service):
        problem = "pool local cannot start workers: no such file"
        monkeypatch.setattr(EngineService, "problem", property(lambda _self: problem))
        panel.refresh()
        await until(lambda: panel.message.text() == problem, what="the problem")
        assert panel.message_is_error and ERROR_COLOR in panel.message.styleSheet()


async def test_a_vm_not_deleted_yet_shows_with_its_age_and_why(lb_home: Path) -> None:
    async with open_panel() as (panel, service):
        await until(lambda: states(panel) == ["active"], what="the standing worker")
        made = time.time() - 125

        def stuck(conn: Any) -> None:  # what a delete refused by the cloud leaves
            conn.execute(
                insert(Instance).values(
                    name="local-stuck",
                    pool="local",
                    state="deleting",
                    cores_mcpu=1000,
                    time_created=made,
                    time_deactivated=made + 60,
                    handle={},
                    reason="idle for 300s",
                    delete_error="Compute Engine is busy or unavailable (tried 3 time(s))",
                )
            )

        await service.db.run(stuck)
        panel.refresh()
        await until(lambda: "deleting" in states(panel), what="the VM being deleted")
        text = panel.message.text()
        assert "local-stuck (made 2m" in text and "retired: idle for 300s" in text, text
        assert "not deleted yet: Compute Engine is busy" in text, text
        assert pool_cell(panel, "local", 2) == "1 / 3", "a VM being deleted is not live"


async def test_the_limits_form_follows_changes_made_elsewhere_and_apply_keeps_them(
    lb_home: Path,
) -> None:
    async with open_panel() as (panel, service):
        await until(lambda: panel.selected_pool == "local", what="the pools")
        assert panel.price.value() == 0
        await service.set_pool("local", price_per_core_hour_usd=Decimal(5))  # `pool set --price 5`
        await until(lambda: panel.price.value() == 5, what="the form to show the new price")

        panel.max_instances.setValue(4)  # the user edits Max only; meanwhile, elsewhere:
        await service.set_pool("local", price_per_core_hour_usd=Decimal(7), min_instances=0)
        await click(panel.apply_button)
        await until(lambda: panel.message.text() == "Saved the settings of local.", what="the ack")
        pool = (await local(service)).pool
        assert pool.max_instances == 4
        assert pool.price_per_core_hour_usd == Decimal(7) and pool.min_instances == 0
        await until(lambda: panel.price.value() == 7, what="the form to show the new price")


async def test_scale_to_n_is_held_shown_and_released_and_after_drain_points_to_the_form(
    lb_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_panel() as (panel, service):
        await until(lambda: states(panel) == ["active"], what="the standing worker")
        assert not panel.release_button.isEnabled()
        panel.scale_to.setValue(2)
        await click(panel.scale_button)
        await until(lambda: "held at 2" in panel.title.text(), what="the held target")
        assert not panel.message.text().endswith("…")  # a finished sentence, not "Scaling…"
        await until(lambda: states(panel) == ["active"] * 2, what="two workers")
        await click(panel.release_button)
        await until(lambda: "held at" not in panel.title.text(), what="the release")
        assert (await local(service)).pool.scale_target is None

        monkeypatch.setattr(QMessageBox, "question", lambda *_args: QMessageBox.StandardButton.Yes)
        await click(panel.drain_button)
        await until(lambda: states(panel) == [], what="the workers to retire")
        panel.scale_to.setValue(3)
        await click(panel.scale_button)
        assert panel.message_is_error
        assert "Limits form above" in panel.message.text() and "drained" in panel.message.text()
        panel.max_live_instances.setValue(3)
        await click(panel.apply_button)
        await until(lambda: panel.message.text().startswith("Saved"), what="the new limit")
        await click(panel.scale_button)
        await until(lambda: states(panel) == ["active"] * 3, what="three workers after drain")


async def test_the_job_private_pool_says_what_it_is(lb_home: Path) -> None:
    async with open_panel() as (panel, _service):
        await until(lambda: panel.selected_pool == "local", what="the pools")
        panel.select_pool("job-private")
        assert "name a machine type" in panel.title.text()
        row = next(
            r
            for r in range(panel.pool_list.rowCount())
            if panel.pool_list.item(r, 0).text() == "job-private"
        )
        assert "one per job" in panel.pool_list.item(row, 0).toolTip()
