"""How fast the DAG canvas opens and pans large DAGs (offscreen rendering).

For each size: writes a DAG file without a layout (a layered graph: each job depends on one or
two jobs of the layer before), then times opening it as the editor does (parse, auto-layout,
build the scene) and renders a pan sequence of the view offscreen, at a zoom where the whole
graph is shown (level of detail: nodes drawn simplified) and at 100 % (full detail), and prints
frames per second. Targets: 10,000 nodes open in <= 2 s, pan >= 30 frames per second.

    python bench/canvas.py [--sizes 1000,10000] [--frames 60]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import yaml
from PySide6.QtGui import QImage, QPainter, QUndoStack
from PySide6.QtWidgets import QApplication

from app.models.dag_document import DagDocument
from app.views.canvas.scene import DagScene
from app.views.canvas.view import CanvasView

WIDTH, HEIGHT = 1280, 800
LAYER_SIZE = 50


def write_dag(n: int, directory: Path) -> Path:
    rng = random.Random(n)
    jobs = []
    for i in range(n):
        job: dict[str, object] = {"name": f"job-{i}", "command": f"echo {i}"}
        layer = i // LAYER_SIZE
        if layer:
            start = (layer - 1) * LAYER_SIZE
            parents = {rng.randrange(start, start + LAYER_SIZE) for _ in range(rng.randint(1, 2))}
            job["depends_on"] = [f"job-{p}" for p in sorted(parents)]
        jobs.append(job)
    path = directory / f"dag-{n}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "name": f"bench-{n}", "jobs": jobs}))
    return path


def pan_fps(view: CanvasView, frames: int) -> float:
    """Render ``frames`` frames of a horizontal pan into an offscreen image."""
    image = QImage(WIDTH, HEIGHT, QImage.Format.Format_ARGB32_Premultiplied)
    bar = view.horizontalScrollBar()
    span = max(1, bar.maximum() - bar.minimum())
    start = time.perf_counter()
    for frame in range(frames):
        bar.setValue(bar.minimum() + span * frame // max(1, frames - 1))
        painter = QPainter(image)
        view.render(painter)
        painter.end()
    return frames / (time.perf_counter() - start)


def measure(n: int, frames: int, directory: Path) -> None:
    path = write_dag(n, directory)
    start = time.perf_counter()
    document = DagDocument.load(path)
    loaded = time.perf_counter()
    scene = DagScene(document)
    view = CanvasView(scene, QUndoStack())
    view.resize(WIDTH, HEIGHT)
    view.show()
    QApplication.processEvents()
    opened = time.perf_counter()
    print(
        f"{n:>6,} nodes: opened in {opened - start:.2f} s "
        f"(parse + layout {loaded - start:.2f} s, scene {opened - loaded:.2f} s; target <= 2 s)"
    )
    view.fit_all()
    overview = pan_fps(view, frames)
    view.resetTransform()
    detail = pan_fps(view, frames)
    print(
        f"{'':>6}  pan: {overview:.0f} frames/s with all nodes in view (simplified), "
        f"{detail:.0f} frames/s at 100 % (target >= 30)"
    )
    view.close()
    scene.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            measure(n, args.frames, Path(tmp))
    del app


if __name__ == "__main__":
    main()
