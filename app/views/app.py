"""Start the desktop: a QApplication, the qasync loop, the engine service and the main window."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_API", "pyside6")  # qasync picks the binding from this

import qasync
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

from app.engine.service import EngineService
from app.errors import UserError
from app.models.identity import default_user
from app.views.bridge import EngineBridge
from app.views.icons import app_icon
from app.views.main_window import MainWindow
from app.views.settings import APPLICATION, ORGANIZATION, DesktopSettings
from app.views.style import apply_palette

log = logging.getLogger("labbatch.desktop")
EXIT_OK, EXIT_CONFIG = 0, 2


class QtLoop(qasync.QEventLoop):
    """qasync's loop, with the last event processing of `run_until_complete` inside the loop.

    qasync processes pending Qt events once more after the loop has stopped; callbacks of
    tasks still alive then (the engine's loops) would run with no running asyncio loop.
    """

    def run_forever(self) -> None:
        try:
            super().run_forever()
        finally:
            asyncio.events._set_running_loop(self)

    def run_until_complete(self, future: Any) -> Any:
        try:
            return super().run_until_complete(future)
        finally:
            asyncio.events._set_running_loop(None)


class Desktop:
    """One running desktop: opens the engine, shows the window, shuts down cleanly on close."""

    def __init__(self, settings: DesktopSettings, *, log_file: str = "") -> None:
        self.settings = settings
        self.log_file = log_file
        self.service: EngineService | None = None
        self.bridge: EngineBridge | None = None
        self.window: MainWindow | None = None
        self._closed = asyncio.Event()

    async def open(self, url: str | None, user: str) -> MainWindow:
        """Open the database, start the engine and show the window (UserError if it cannot)."""
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.setQuitOnLastWindowClosed(False)  # the loop ends when the engine has stopped
        self.service = await EngineService.open(url, user=user)
        await self.service.start()
        self.bridge = EngineBridge(self.service, log_file=self.log_file)
        bridge = self.bridge
        # a bug in a slot must not pass silently nor kill the window: log it, show it briefly
        sys.excepthook = lambda _type, exc, _tb: bridge.report_internal(exc)
        self.window = MainWindow(self.bridge, self.settings)
        self.window.close_requested.connect(lambda: asyncio.ensure_future(self.shutdown()))
        self.window.show()
        return self.window

    async def shutdown(self) -> None:
        """Stop the engine (or hand the pools to `labbatch serve`), then close the window."""
        try:
            if self.bridge is not None:
                await self.bridge.close()
            if self.service is not None:
                keep = self.window is not None and self.window.settings.keep_pools_running
                await self.service.close(hand_over=keep)
        finally:
            if self.window is not None:
                self.window.may_close = True
                self.window.close()
            self._closed.set()

    async def wait_closed(self) -> None:
        """Until the window has closed and the engine has stopped."""
        await self._closed.wait()

    async def run(self, url: str | None, user: str) -> int:
        try:
            await self.open(url, user)
        except UserError as exc:
            print(f"labbatch: {exc}", file=sys.stderr)
            if QGuiApplication.platformName() not in ("offscreen", "minimal"):
                QMessageBox.critical(None, "LabBatch cannot start", str(exc))
            return EXIT_CONFIG
        await self._closed.wait()
        return EXIT_OK


def make_application() -> QApplication:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("LabBatch")
    app.setWindowIcon(app_icon())
    apply_palette(app)
    # follow the system when it switches between light and dark while LabBatch runs
    app.styleHints().colorSchemeChanged.connect(lambda _scheme: apply_palette(app))
    return app


def run_desktop(*, db_url: str | None, user: str | None, log_file: Path | None = None) -> int:
    """`labbatch` with no command: the desktop app until its window closes."""
    app = make_application()
    settings = DesktopSettings.load()
    url = db_url or settings.database_url or None
    name = user or settings.user or default_user()
    loop = QtLoop(app)
    asyncio.set_event_loop(loop)
    desktop = Desktop(settings, log_file=str(log_file or ""))
    try:
        with loop:
            return loop.run_until_complete(desktop.run(url, name))
    except KeyboardInterrupt:
        return 130
