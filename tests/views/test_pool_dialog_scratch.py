"""The New pool dialog checks a cloud pool's scratch location with the cloud's storage (as
`labbatch pool create` does), off the event loop: a missing bucket is refused inline, a bucket
in another region than the pool is a warning the user may create the pool anyway over."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.views.pool_dialog import ERROR_COLOR, WARNING_COLOR, NewPoolDialog
from tests.clouds.fake_gce import FakeGce, serving
from tests.storage.emulators import Gcs, gcs_emulator
from tests.storage.helpers import gcs_storage, new_bucket
from tests.views.conftest import until
from tests.views.test_pool_dialog import fill, new_pool_dialog, open_panel, refused, stored

__all__ = ["gcs_emulator"]
pytestmark = pytest.mark.timeout(60)


def _gce(dialog: NewPoolDialog, gce_url: str, gcs: Gcs, zone: str) -> None:
    dialog.name.setText("gce")
    dialog.set_cloud("gcp")
    assert not dialog.scratch.isHidden() and dialog.scratch.placeholderText().startswith("gs://")
    settings = {"project": "test", "zones": zone, "allow_from": "203.0.113.7"}
    fill(dialog, "gcp", {**settings, "api_endpoint": gce_url, "storage.endpoint": gcs.endpoint})


async def test_a_missing_bucket_is_refused_and_a_far_one_warned_about(
    lb_home: Path, gcs_emulator: Gcs
) -> None:
    bucket = new_bucket(gcs_storage(gcs_emulator))  # the emulator's buckets live in "US"
    async with serving(FakeGce()) as gce_url, open_panel() as (panel, service):
        dialog = new_pool_dialog(panel)
        assert dialog.scratch.isHidden()  # local pools keep files in the data dir
        _gce(dialog, gce_url, gcs_emulator, "europe-west1-b")
        dialog.scratch.setText("gs://no-such-bucket/scratch")
        text = await refused(dialog)
        assert "pool gce" in text and "no bucket named no-such-bucket" in text
        assert ERROR_COLOR in dialog.error.styleSheet() and dialog.warning.isHidden()
        assert "gce" not in await stored(service)

        dialog.scratch.setText(f"gs://{bucket}/scratch")
        dialog.create_button.click()
        await until(lambda: not dialog.warning.isHidden(), what="the region warning")
        assert f"bucket {bucket} keeps its data in us" in dialog.warning.text()
        assert "egress" in dialog.warning.text() and WARNING_COLOR in dialog.warning.styleSheet()
        assert dialog.create_button.text() == "Create anyway" and dialog.isVisible()
        assert dialog.error.isHidden() and "gce" not in await stored(service)

        closed: list[int] = []
        dialog.finished.connect(closed.append)
        await until(dialog.create_button.isEnabled, what="Create anyway to be enabled")
        dialog.create_button.click()
        await until(lambda: closed, what="the dialog to close")
        pool = (await stored(service))["gce"]
        assert pool.scratch == f"gs://{bucket}/scratch"
        assert pool.config["storage"] == {"endpoint": gcs_emulator.endpoint}
        assert pool.regions == ("europe-west1",)


async def test_a_near_bucket_creates_the_pool_at_once(lb_home: Path, gcs_emulator: Gcs) -> None:
    bucket = new_bucket(gcs_storage(gcs_emulator))
    async with serving(FakeGce()) as gce_url, open_panel() as (panel, service):
        dialog = new_pool_dialog(panel)
        _gce(dialog, gce_url, gcs_emulator, "us-central1-a")
        dialog.scratch.setText(f"gs://{bucket}/scratch")
        closed: list[int] = []
        dialog.finished.connect(closed.append)
        dialog.create_button.click()
        await until(lambda: closed, what="the dialog to close")
        assert closed == [NewPoolDialog.DialogCode.Accepted]  # no warning stopped it
        assert (await stored(service))["gce"].scratch == f"gs://{bucket}/scratch"
