"""The "New pool" dialog of the pools panel, and what the panel shows of a cloud pool."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from PySide6.QtWidgets import QCheckBox, QLineEdit, QSpinBox

from app.clouds import registry
from app.engine.browse import PoolRow
from app.engine.service import EngineService
from app.engine.workers.pools import PoolConfig, cloud_config
from app.views.bridge import EngineBridge
from app.views.pool_dialog import CLOUD_FIELDS, ERROR_COLOR, NewPoolDialog
from app.views.pools import PoolsPanel
from tests.clouds.fake_azure import FakeAzure, serve
from tests.clouds.fake_gce import FakeGce, serving
from tests.clouds.fake_vm import free_port
from tests.views.conftest import until

pytestmark = pytest.mark.timeout(60)
SUB = "sub-1"
SUBNET = (
    f"/subscriptions/{SUB}/resourceGroups/rg-lab/providers/Microsoft.Network"
    "/virtualNetworks/v/subnets/s"
)


@contextlib.asynccontextmanager
async def open_panel() -> AsyncIterator[tuple[PoolsPanel, EngineService]]:
    """A started engine and a shown panel, opened and closed inside the test body (not a
    fixture: see tests/views/test_pools_view.py)."""
    service = await EngineService.open(None, user="tester", n_workers=0)
    await service.start()
    bridge = EngineBridge(service)
    errors: list[str] = []
    bridge.internal_error.connect(errors.append)
    panel = PoolsPanel(bridge)
    panel.show()
    try:
        await until(lambda: panel.selected_pool is not None, what="the pools")
        yield panel, service
    finally:
        panel.hide()  # not close(): closing the last window would quit the Qt (and asyncio) loop
        panel.deleteLater()
        await bridge.close()
        await service.close()
    assert not errors, f"internal errors reached the user: {errors}"


def new_pool_dialog(panel: PoolsPanel) -> NewPoolDialog:
    panel.new_pool_button.click()
    dialog = panel.findChild(NewPoolDialog)
    assert isinstance(dialog, NewPoolDialog) and dialog.isVisible()
    return dialog


def fill(dialog: NewPoolDialog, cloud: str, values: dict[str, object]) -> None:
    """Type cloud settings into the dialog's page for ``cloud``."""
    page = dialog.page(cloud)
    for key, value in values.items():
        editor = page.editor(key)
        if isinstance(editor, QLineEdit):
            editor.setText(str(value))
        elif isinstance(editor, QSpinBox):
            assert isinstance(value, int)
            editor.setValue(value)
        else:
            assert isinstance(editor, QCheckBox) and isinstance(value, bool)
            editor.setChecked(value)


async def create(dialog: NewPoolDialog) -> None:
    """Click Create and wait for the dialog to close."""
    closed: list[int] = []
    dialog.finished.connect(closed.append)
    await until(dialog.create_button.isEnabled, what="Create to be enabled")
    dialog.create_button.click()
    await until(lambda: closed, what="the dialog to close")
    assert closed == [NewPoolDialog.DialogCode.Accepted]


async def refused(dialog: NewPoolDialog) -> str:
    """Click Create and wait for the refusal; the dialog stays open."""
    dialog.create_button.click()
    await until(lambda: dialog.error.text() and dialog.create_button.isEnabled(), what="refusal")
    assert dialog.isVisible() and not dialog.error.isHidden()
    assert ERROR_COLOR in dialog.error.styleSheet()
    return dialog.error.text()


async def stored(service: EngineService) -> dict[str, PoolConfig]:
    return {row.pool.name: row.pool for row in await service.pools()}


def test_the_dialog_sets_only_keys_the_clouds_accept() -> None:
    for kind, fields in CLOUD_FIELDS.items():
        assert {f.key.split(".")[0] for f in fields} <= set(registry.config_keys(kind)), kind


async def test_creates_a_local_pool_and_selects_it(lb_home: Path) -> None:
    async with open_panel() as (panel, service):
        dialog = new_pool_dialog(panel)
        assert dialog.cloud_kind == "local"
        assert not dialog.pages.currentWidget().isHidden()
        assert dialog.spot.isHidden() and not dialog.price.isHidden()
        dialog.name.setText("cpu")
        dialog.worker_cores.setValue(2.0)
        dialog.max_instances.setValue(3)
        dialog.max_live_instances.setValue(2)
        dialog.idle_timeout.setValue(60)
        dialog.price.setValue(0.02)
        await create(dialog)

        await until(lambda: panel.selected_pool == "cpu", what="the new pool to be selected")
        assert panel.message.text() == "Created pool cpu." and not panel.message_is_error
        assert panel.cloud_box.isHidden()
        assert panel.max_live_instances.value() == 2 and panel.worker_cores.value() == 2.0
        pool = (await stored(service))["cpu"]
        assert (pool.cloud, pool.worker_cores_mcpu, pool.idle_timeout_s) == ("local", 2000, 60)
        assert (pool.min_instances, pool.max_live_instances, pool.max_instances) == (0, 2, 3)
        assert pool.price_per_core_hour_usd == Decimal("0.02")
        assert not pool.preemptible and pool.config == {}


async def test_a_bad_field_shows_inline_and_creates_nothing(lb_home: Path) -> None:
    async with open_panel() as (panel, service):
        before = set(await stored(service))
        dialog = new_pool_dialog(panel)
        dialog.name.setText("gce")
        dialog.set_cloud("gcp")
        assert dialog.pages.currentWidget() is dialog.page("gcp")
        assert not dialog.spot.isHidden() and dialog.price.isHidden()
        assert dialog.worker_cores.value() == 4.0  # the default machine's cores
        fill(dialog, "gcp", {"allow_from": "203.0.113.7"})  # no project
        text = await refused(dialog)
        assert "pool gce" in text and "'project'" in text
        assert dialog.name.text() == "gce" and dialog.cloud_kind == "gcp"  # values kept

        dialog.name.setText("az")
        dialog.set_cloud("azure")
        fill(
            dialog,
            "azure",
            {
                "subscription_id": SUB,
                "resource_group": "rg-lab",
                "subnet_id": SUBNET,
                "ssh_public_key": "ssh-ed25519 AAAA test",
                "allow_from": "203.0.113.7, not-an-address",
            },
        )
        text = await refused(dialog)
        assert "pool az" in text and "allow_from" in text and "not-an-address" in text

        dialog.name.setText("local")  # a local pool with a taken name
        dialog.set_cloud("local")
        assert "exists already" in await refused(dialog)
        assert set(await stored(service)) == before
        dialog.reject()


async def test_creates_cloud_pools_and_shows_their_settings(lb_home: Path) -> None:
    async with (
        serving(FakeGce()) as gce_url,
        serve(FakeAzure()) as azure_url,
        open_panel() as (panel, service),
    ):
        dialog = new_pool_dialog(panel)
        dialog.name.setText("gce")
        dialog.set_cloud("gcp")
        dialog.spot.setChecked(True)
        dialog.max_live_instances.setValue(2)
        page = dialog.page("gcp")
        assert page.advanced.isHidden()
        page.advanced_toggle.click()
        assert not page.advanced.isHidden()
        fill(
            dialog,
            "gcp",
            {
                "project": "lab-project",
                "zones": "us-central1-a, us-central1-b",
                "allow_from": "203.0.113.7",
                "api_endpoint": gce_url,
            },
        )
        await create(dialog)
        await until(lambda: panel.selected_pool == "gce", what="the GCE pool to be selected")
        assert not panel.cloud_box.isHidden()
        assert panel.cloud_summary.text().splitlines() == [
            "Cloud: Google Compute Engine, spot VMs",
            "Project: lab-project",
            "Zones: us-central1-a, us-central1-b",
            "Machine type: n2-standard-4",
        ]
        assert not panel.price.isEnabled()

        dialog = new_pool_dialog(panel)
        dialog.name.setText("az")
        dialog.set_cloud("azure")
        fill(
            dialog,
            "azure",
            {
                "subscription_id": SUB,
                "resource_group": "rg-lab",
                "fallback_vm_sizes": "Standard_D4as_v5,",
                "subnet_id": SUBNET,
                "ssh_public_key": "ssh-ed25519 AAAA test",
                "allow_from": "203.0.113.0/24",
                "base_url": azure_url,
            },
        )
        await create(dialog)
        await until(lambda: panel.selected_pool == "az", what="the Azure pool to be selected")
        assert panel.cloud_summary.text().splitlines() == [
            "Cloud: Azure, standard (not spot) VMs",
            f"Subscription ID: {SUB}",
            "Resource group: rg-lab",
            "Location: eastus",
            "VM size: Standard_D4s_v5",
        ]

        pools = await stored(service)
        gcp, azure = pools["gce"], pools["az"]
        assert (gcp.cloud, gcp.preemptible, gcp.worker_cores_mcpu) == ("gcp", True, 4000)
        assert gcp.price_per_core_hour_usd is None
        assert cloud_config(gcp) == {
            "project": "lab-project",
            "zones": ["us-central1-a", "us-central1-b"],
            "machine_type": "n2-standard-4",
            "allow_from": ["203.0.113.7"],
            "boot_disk_gb": 20,
            "worker_port": 8443,
            "api_endpoint": gce_url,
        }
        assert (azure.cloud, azure.preemptible) == ("azure", False)
        assert cloud_config(azure) == {
            "subscription_id": SUB,
            "resource_group": "rg-lab",
            "location": "eastus",
            "vm_size": "Standard_D4s_v5",
            "fallback_vm_sizes": ["Standard_D4as_v5"],
            "subnet_id": SUBNET,
            "ssh_public_key": "ssh-ed25519 AAAA test",
            "allow_from": ["203.0.113.0/24"],
            "worker_port": 8443,
            "base_url": azure_url,
        }

        panel.select_pool("local")  # the local pool has no cloud box
        assert panel.cloud_box.isHidden()


async def test_a_worker_reason_shows_inline(lb_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reason a live worker gives (the driver sets them) shows in red under the message."""
    async with open_panel() as (panel, service):
        panel.scale_to.setValue(1)
        panel.scale_button.click()
        await until(lambda: panel.instances.rowCount() == 1, what="a worker row")
        assert not panel.message_is_error
        real_pools = EngineService.pools

        async def pools_with_a_reason(self: EngineService) -> list[PoolRow]:
            rows = await real_pools(self)
            return [
                replace(
                    row,
                    instances=tuple(
                        replace(r, instance=replace(r.instance, reason="worker not answering"))
                        for r in row.instances
                    ),
                )
                for row in rows
            ]

        monkeypatch.setattr(EngineService, "pools", pools_with_a_reason)
        panel.refresh()
        await until(lambda: panel.message_is_error, what="the reason")
        name = panel.instances.item(0, 0).text()
        assert panel.message.text().splitlines()[-1] == f"{name}: worker not answering"
        assert ERROR_COLOR in panel.message.styleSheet()
        assert service.problem is None


def states(panel: PoolsPanel) -> list[str]:
    table = panel.instances
    return [table.item(r, 1).text() for r in range(table.rowCount())]


async def create_and_scale_to_one(
    panel: PoolsPanel, cloud: str, name: str, settings: dict[str, object]
) -> None:
    """Create a 1-core pool through the dialog, then scale it to one worker with the buttons."""
    dialog = new_pool_dialog(panel)
    dialog.name.setText(name)
    dialog.set_cloud(cloud)
    dialog.worker_cores.setValue(1.0)
    fill(dialog, cloud, {"allow_from": "127.0.0.1", "worker_port": free_port(), **settings})
    await create(dialog)
    await until(lambda: panel.selected_pool == name, what=f"pool {name} to be selected")
    panel.scale_to.setValue(1)
    await until(panel.scale_button.isEnabled, what="Scale to be enabled")
    panel.scale_button.click()
    await until(lambda: len(states(panel)) == 1, what=f"the worker row of {name}")


@pytest.mark.timeout(180)
async def test_scaling_cloud_pools_boots_workers_in_the_fakes(
    lb_home: Path, tmp_path: Path
) -> None:
    gce, azure = FakeGce(boot_dir=tmp_path / "gce-vms"), FakeAzure(vm_root=tmp_path / "az-vms")
    async with serving(gce) as gce_url, serve(azure) as azure_url:
        try:
            async with open_panel() as (panel, service):
                await create_and_scale_to_one(
                    panel, "gcp", "gce", {"project": "lab-project", "api_endpoint": gce_url}
                )
                await until(lambda: gce.insert_bodies, what="the VM insert")
                await until(lambda: states(panel) == ["active"], timeout_s=60, what="GCE worker")
                assert panel.instances.item(0, 0).text().startswith("gce-")

                await create_and_scale_to_one(
                    panel,
                    "azure",
                    "az",
                    {
                        "subscription_id": SUB,
                        "resource_group": "rg-lab",
                        "subnet_id": SUBNET,
                        "ssh_public_key": "ssh-ed25519 AAAA test",
                        "base_url": azure_url,
                    },
                )
                await until(lambda: azure.put_bodies, what="the VM PUT")
                await until(lambda: states(panel) == ["active"], timeout_s=60, what="Azure worker")
                assert panel.instances.item(0, 0).text().startswith("az-")
                live = {row.pool.name: row.n_live for row in await service.pools()}
                assert (live["gce"], live["az"]) == (1, 1)
                assert not panel.message_is_error, panel.message.text()
        finally:
            await gce.stop_vms()
            await azure.stop_vms()


async def test_a_pool_whose_workers_cannot_start_says_why(lb_home: Path, tmp_path: Path) -> None:
    gce = FakeGce(boot_dir=tmp_path / "gce-vms")
    gce.unauthorized = True  # the lab's credentials are gone
    async with serving(gce) as gce_url, open_panel() as (panel, _service):
        dialog = new_pool_dialog(panel)
        dialog.name.setText("gce")
        dialog.set_cloud("gcp")
        settings = {"project": "lab-project", "api_endpoint": gce_url, "allow_from": "127.0.0.1"}
        fill(dialog, "gcp", settings)
        await create(dialog)
        await until(lambda: panel.selected_pool == "gce", what="pool gce to be selected")
        panel.scale_to.setValue(1)
        await until(panel.scale_button.isEnabled, what="Scale to be enabled")
        panel.scale_button.click()  # its worker fails at once: no row to wait for

        def says_why() -> bool:
            panel.refresh()
            return "Workers cannot start" in panel.message.text()

        await until(says_why, timeout_s=30, what="the pool's problem in the view")
        assert panel.message_is_error
        assert "gcloud auth application-default login" in panel.message.text()
        assert "Traceback" not in panel.message.text()


async def test_worker_cores_follow_the_machine_type_until_set_by_hand(lb_home: Path) -> None:
    async with open_panel() as (panel, _service):
        dialog = new_pool_dialog(panel)
        dialog.set_cloud("gcp")
        fill(dialog, "gcp", {"machine_type": "n2-standard-8"})
        assert dialog.worker_cores.value() == 8.0
        dialog.set_cloud("azure")
        fill(dialog, "azure", {"vm_size": "Standard_D16s_v5"})
        assert dialog.worker_cores.value() == 16.0
        dialog.worker_cores.setValue(12.0)  # the user's choice wins from now on
        fill(dialog, "azure", {"vm_size": "Standard_D4s_v5"})
        assert dialog.worker_cores.value() == 12.0
        dialog.reject()
