"""Take the README's screenshots of the desktop: run it on a throwaway data dir, submit the
example DAGs as two users, and grab each main view. Run it through scripts/screenshots.sh
(it starts Xvfb); the PNGs go to docs/screenshots/."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["LABBATCH_HOME"] = tempfile.mkdtemp(prefix="labbatch-shots-")
os.environ.setdefault("QT_API", "pyside6")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

from app.engine.batches import frontend  # noqa: E402
from app.engine.billing import projects  # noqa: E402
from app.engine.browse import BatchFilter  # noqa: E402
from app.models.spec import parse_dag_text  # noqa: E402
from app.views.app import Desktop, QtLoop, make_application  # noqa: E402
from app.views.main_window import TAB_DASHBOARD, TAB_POOLS, MainWindow  # noqa: E402
from app.views.settings import DesktopSettings  # noqa: E402
from app.views.timeline import TimelineWindow  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
EXAMPLES = ROOT / "examples"

SAMPLES = """
version: 1
name: align-samples
billing_project: rnaseq-grant
attributes: {project: rnaseq}
jobs:
""" + "".join(
    f"""  - name: align-{i}
    cpu: 0.5
    command: "for s in $(seq 1 12); do echo sample {i} step $s of 12; sleep 2; done"
"""
    for i in range(16)
)


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


def grab(widget: QWidget, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    widget.grab().save(str(path))
    print(f"wrote {path.relative_to(ROOT)}")


async def main() -> None:
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, os.environ["LABBATCH_HOME"]
    )
    desktop = Desktop(DesktopSettings())
    window: MainWindow = await desktop.open(None, "ada")
    window.resize(1360, 860)
    service = desktop.service
    assert service is not None
    await service.set_pool(
        "local",
        worker_cores_mcpu=2000,
        min_instances=2,
        max_instances=2,
        max_live_instances=2,
        price_per_core_hour_usd=0.04,
    )
    await service.scale_pool("local", 2)
    await projects.create_project(
        service.db, "rnaseq-grant", limit_usd=Decimal("0.01"), users=("ada", "grace")
    )
    for name in ("diamond.yaml", "failure.yaml", "per-sample.yaml"):
        await service.submit(await service.load_dag(EXAMPLES / name))
    await settle(3)
    other = parse_dag_text(SAMPLES.replace("align-samples", "variant-calls"), source="b.yaml")
    await frontend.submit_batch(service.db, other, user="grace")
    running = await service.submit(parse_dag_text(SAMPLES, source="a.yaml"))
    await settle(12)

    window.open_batch(running)
    await settle(1.5)
    window.batch_view.select_job(2)
    window.batch_view.detail.tabs.setCurrentIndex(3)  # the live log
    await settle(4)
    grab(window, "batches")

    window.tabs.setCurrentIndex(TAB_POOLS)
    await settle(2.5)
    grab(window, "pools")

    await shoot_pool_dialog(window)

    window.tabs.setCurrentIndex(TAB_DASHBOARD)
    await settle(20)
    grab(window, "dashboard")

    # free the workers so that the canvas's batch runs while it is shown
    for row in await service.find_batches(BatchFilter(limit=50)):
        if not row.batch.complete:
            await frontend.cancel_batch(service.db, row.batch.id)
    await shoot_canvas(window)

    window.close()
    await desktop.wait_closed()


async def shoot_pool_dialog(window: MainWindow) -> None:
    """The New pool dialog, filled in for a GCE spot pool (docs/clouds.md shows it)."""
    dialog = window.pools.open_new_pool_dialog()
    dialog.name.setText("gce-spot")
    dialog.set_cloud("gcp")
    dialog.spot.setChecked(True)
    page = dialog.page("gcp")
    for key, text in (
        ("project", "my-lab-project"),
        ("zones", "us-central1-a, us-central1-b"),
        ("machine_type", "n2-standard-8"),
        ("allow_from", "203.0.113.7/32"),
    ):
        page.editor(key).setText(text)  # type: ignore[attr-defined]
    await settle(1)
    grab(dialog, "pool-dialog")
    dialog.reject()


CANVAS_DAG = """version: 1
name: rnaseq
jobs:
  - name: fetch-reference
    command: sleep 2; echo reference
  - name: index
    depends_on: [fetch-reference]
    cpu: 1
    command: sleep 3; echo index
  - name: align
    depends_on: [index]
    cpu: 0.5
    scatter: {sample: [s01, s02, s03, s04, s05, s06, s07, s08]}
    command: sleep 4; echo aligned $SAMPLE
  - name: quantify
    depends_on: [align]
    scatter: {sample: [s01, s02, s03, s04, s05, s06, s07, s08]}
    cpu: 0.5
    command: sleep 2; echo counts $SAMPLE
  - name: qc-report
    depends_on: [align]
    always_run: true
    command: echo qc
  - name: merge-counts
    depends_on: [quantify]
    command: echo merged
  - name: differential-expression
    depends_on: [merge-counts]
    cpu: 2
    memory: 8Gi
    command: sleep 2; echo de
"""


async def shoot_canvas(window: MainWindow) -> None:
    path = Path(os.environ["LABBATCH_HOME"]) / "rnaseq.yaml"
    path.write_text(CANVAS_DAG)
    canvas = window.new_canvas()
    canvas.resize(1360, 820)
    canvas.open_file(path, ask=False)
    canvas.scene.select_nodes([canvas.document.node_named("align")])
    await settle(1.5)
    grab(canvas, "canvas-editor")
    canvas.submit_flow.ask = lambda _dialog: True  # type: ignore[method-assign]
    canvas.submit()
    await settle(1)
    assert canvas.submitted_batch_id is not None
    timeline = TimelineWindow(window.bridge, canvas.submitted_batch_id)
    timeline.resize(1280, 240)
    timeline.show()
    await settle(7)
    grab(timeline, "timeline")  # live: done, running and waiting bars
    timeline.close()
    canvas.scene.clearSelection()
    await settle(1)
    grab(canvas, "canvas-run")
    canvas.run_watcher.stop()
    canvas.close()


if __name__ == "__main__":
    app = make_application()
    loop = QtLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(main())
