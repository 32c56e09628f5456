"""`labbatch` called as a function (tests, scripts) instead of run as the program."""

from __future__ import annotations

import gc
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
