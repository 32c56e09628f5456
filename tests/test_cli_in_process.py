"""`labbatch` called as a function (tests, scripts) instead of run as the program."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import pytest

from app.cli.main import main

pytestmark = pytest.mark.timeout(60)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_a_command_called_in_process_leaves_the_callers_garbage_collector_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The program freezes the heap after loading a command's modules (a faster start). Done
    # in a caller's process it froze the caller's garbage too: a test's leaked sessions and
    # subprocess transports then outlived every later test and warned at interpreter exit.
    frozen = gc.get_freeze_count()
    assert main(["validate", str(EXAMPLES / "diamond.yaml")]) == 0, capsys.readouterr().err
    assert gc.get_freeze_count() == frozen
    assert gc.isenabled()


def test_a_command_called_in_process_leaves_the_callers_logging_as_it_was(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Its handlers held this test's stderr capture (closed after the test: later records
    # failed with "I/O operation on closed file") and its log file open, for good.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    assert main(["validate", str(EXAMPLES / "diamond.yaml")]) == 0, capsys.readouterr().err
    assert root.handlers == handlers
    assert root.level == level
