"""Desktop tests: a real QApplication (offscreen), the qasync loop, a real engine service on a
SQLite file with a real local pool."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytestqt.plugin
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QDialog

from app.engine.service import EngineService
from app.views.app import QtLoop
from app.views.bridge import EngineBridge
from app.views.submit import SubmitFlow

# The qasync loop processes Qt events whenever a test or a fixture awaits. pytest-qt processes
# them again between fixtures, when no asyncio loop runs, so the engine's callbacks would run
# outside their loop ("no running event loop"): leave event processing to the loop.
pytestqt.plugin._process_events = lambda: None

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _qapp() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(["labbatch-tests"])
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(False)  # closing a test's widget must not stop the loop
    return app


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Callable[[], Any]]:
    """Async desktop tests run on the qasync loop, so Qt timers and signals work in awaits."""
    return {"qt": lambda: QtLoop(_qapp())}


@pytest.fixture(autouse=True)
def collect_old_loops() -> None:
    """Collect the previous test's closed loop here, on this thread, not later on an engine
    thread where its Qt timers would outlive it and fire into freed memory."""
    gc.collect()


@pytest.fixture(autouse=True)
def qt_settings(tmp_path: Path) -> None:
    """Settings go to a temp dir, never to the tester's own."""
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qs"))


@pytest.fixture
async def service(lb_home: Path) -> AsyncIterator[EngineService]:
    """A started engine service on a SQLite file in the test's data dir, one local worker."""
    svc = await EngineService.open(None, user="tester", n_workers=1, worker_cores_mcpu=2000)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def bridge(service: EngineService) -> AsyncIterator[EngineBridge]:
    b = EngineBridge(service)
    errors: list[str] = []
    b.internal_error.connect(errors.append)
    yield b
    await b.close()
    assert not errors, f"internal errors reached the user: {errors}"


async def until(check: Callable[[], object], *, timeout_s: float = 20.0, what: str = "it") -> None:
    """Poll ``check`` while the Qt loop runs, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def answer_dialogs(flow: SubmitFlow, *, accept: bool) -> list[QDialog]:
    """Answer a submit flow's dialogs instead of a user; returns the dialogs shown."""
    shown: list[QDialog] = []

    def ask(dialog: QDialog) -> bool:
        shown.append(dialog)
        return accept

    flow.ask = ask  # type: ignore[method-assign]
    return shown
