"""Take the README's screenshot of files on the canvas (docs/screenshots/canvas-files.png):
examples/files.yaml opened in the canvas, run, with `count` selected (its Files table shown).
Run under Xvfb like scripts/screenshots.sh: `QT_QPA_PLATFORM=xcb xvfb-run -a -s
"-screen 0 1440x900x24" .venv/bin/python scripts/screenshot_files.py`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["LABBATCH_HOME"] = tempfile.mkdtemp(prefix="labbatch-shots-")
os.environ.setdefault("QT_API", "pyside6")

from PySide6.QtCore import QSettings  # noqa: E402

from app.views.app import Desktop, QtLoop, make_application  # noqa: E402
from app.views.main_window import MainWindow  # noqa: E402
from app.views.settings import DesktopSettings  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


async def main() -> None:
    home = Path(os.environ["LABBATCH_HOME"])
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(home))
    desktop = Desktop(DesktopSettings())
    window: MainWindow = await desktop.open(None, "ada")
    shutil.copytree(ROOT / "examples" / "data", home / "data")
    path = home / "files.yaml"
    shutil.copyfile(ROOT / "examples" / "files.yaml", path)
    canvas = window.new_canvas()
    canvas.resize(1360, 760)
    canvas.open_file(path, ask=False)
    canvas.submit_flow.ask = lambda _dialog: True  # type: ignore[method-assign]
    canvas.submit()
    for _ in range(100):
        await asyncio.sleep(0.2)
        if canvas.run_watcher.finished:
            break
    canvas.scene.select_nodes([canvas.document.node_named("count")])
    canvas.view.fit_all()
    await asyncio.sleep(1.5)
    OUT.mkdir(parents=True, exist_ok=True)
    canvas.grab().save(str(OUT / "canvas-files.png"))
    print(f"wrote {(OUT / 'canvas-files.png').relative_to(ROOT)}")
    canvas.run_watcher.stop()
    canvas.close()
    window.close()
    await desktop.wait_closed()


if __name__ == "__main__":
    app = make_application()
    loop = QtLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(main())
