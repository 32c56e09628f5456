"""The submit dialog warns, as `labbatch estimate` does, when a batch's files sit in another
region than the pool that would read them: that egress is billed per GB."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QWidget

from app.engine.workers.pools import PoolConfig, create_pool
from app.views.bridge import EngineBridge
from app.views.submit import SubmitDialog, SubmitFlow
from tests.storage.emulators import Gcs, gcs_emulator
from tests.storage.helpers import gcs_storage, new_bucket
from tests.views.conftest import answer_dialogs, until

__all__ = ["gcs_emulator"]


def _dag(tmp_path: Path, reference: str) -> Path:
    path = tmp_path / "far.yaml"
    path.write_text(
        "version: 1\nname: far\n"
        f"inputs: {{reference: {reference}}}\n"
        "jobs:\n"
        "  - name: index\n"
        "    pool: gce\n"
        "    inputs: {ref: reference}\n"
        "    outputs: {idx: .fai}\n"
        '    command: wc -c "$ref" > "$idx"\n'
    )
    return path


async def test_a_bucket_in_another_region_than_the_pool_is_warned_about(
    bridge: EngineBridge, gcs_emulator: Gcs, tmp_path: Path
) -> None:
    bucket = new_bucket(gcs_storage(gcs_emulator))  # the emulator's buckets live in "US"
    config = {
        "project": "test",
        "zones": ["europe-west1-b"],
        "allow_from": ["203.0.113.7/32"],
        "storage": {"endpoint": gcs_emulator.endpoint},
    }
    pool = PoolConfig(
        name="gce",
        cloud="gcp",
        machine_type="e2-standard-2",
        worker_cores_mcpu=2000,
        config=config,
        scratch=f"gs://{bucket}/scratch",
    )
    await create_pool(bridge.service.db, pool)
    parent = QWidget()
    flow = SubmitFlow(bridge, parent)
    shown = answer_dialogs(flow, accept=False)

    flow.start(str(_dag(tmp_path, f"gs://{bucket}/in/ref.fa")))
    await until(lambda: shown, what="the submit dialog")
    dialog = shown[0]
    assert isinstance(dialog, SubmitDialog)
    assert not dialog.warnings.isHidden()
    text = dialog.warnings.text()
    assert f"bucket {bucket} keeps its data in us" in text and "egress" in text
    assert "europe-west1" in text

    flow.start(str(_dag(tmp_path, str(tmp_path / "ref.fa"))))  # a local file: nothing to warn
    await until(lambda: len(shown) == 2, what="the second submit dialog")
    second = shown[1]
    assert isinstance(second, SubmitDialog) and second.warnings.isHidden()
    parent.deleteLater()
