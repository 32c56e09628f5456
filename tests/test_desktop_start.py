"""`labbatch` with no screen: a message that says so and what to use instead, not Qt's abort."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def start_desktop(**env_changes: str | None) -> tuple[int, str, float]:
    """Run `labbatch` (no command) in a child process; its exit code, stderr and duration."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    env.pop("WAYLAND_DISPLAY", None)
    env["PYTHONPATH"] = str(ROOT)
    for key, value in env_changes.items():
        if value is not None:
            env[key] = value
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stderr, time.monotonic() - started


@pytest.mark.skipif(sys.platform != "linux", reason="X11 / Wayland displays are a Linux matter")
def test_no_display_names_the_problem_and_the_command_line() -> None:
    code, stderr, took_s = start_desktop()
    assert code == 2, stderr
    assert took_s < 10
    assert "no display" in stderr and "DISPLAY" in stderr
    assert "labbatch serve" in stderr and "labbatch run" in stderr
    assert "Reinstalling" not in stderr and "Traceback" not in stderr


@pytest.mark.skipif(sys.platform != "linux", reason="X11 / Wayland displays are a Linux matter")
def test_a_display_that_does_not_answer_is_named() -> None:
    code, stderr, took_s = start_desktop(DISPLAY=":97")  # no X server listens there
    assert code == 2, stderr
    assert took_s < 20
    # where Qt's X11 libraries are installed it reaches the display; where not, it names them
    assert "cannot connect to the X display :97" in stderr or "needs the system library" in stderr
    assert "labbatch serve" in stderr
    assert "Reinstalling" not in stderr and "Traceback" not in stderr
