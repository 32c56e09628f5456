"""Before the desktop starts: is there a screen Qt can open a window on?

Without one, Qt aborts the process (exit 134) with advice that is wrong for us ("reinstalling
the application may fix this problem"). This module imports no Qt, so `labbatch` can say what
is missing and what works without a screen, in well under a second when no display is set.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

PROBE_TIMEOUT_S = 15.0
HEADLESS_HINT = (
    "Without a screen, use the command line: `labbatch run FILE` runs a DAG on a local pool, "
    "`labbatch serve` keeps the driver and pools running for other desktops, "
    "`labbatch --help` lists the rest."
)
# platforms that need no screen; Qt accepts "name:options"
_HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "linuxfb", "eglfs", "vkkhrdisplay")
_PROBE = (
    "import sys\n"
    "from PySide6.QtGui import QGuiApplication\n"
    "app = QGuiApplication(sys.argv[:1])\n"
    "print(QGuiApplication.platformName())\n"
)


def display_problem(env: dict[str, str] | None = None) -> str | None:
    """Why the desktop window cannot open here (with what to do instead), or None if it can."""
    env = dict(os.environ if env is None else env)
    platform = env.get("QT_QPA_PLATFORM", "").split(":", 1)[0]
    if platform in _HEADLESS_PLATFORMS or sys.platform in ("darwin", "win32"):
        return None
    has_x = bool(env.get("DISPLAY"))
    has_wayland = bool(env.get("WAYLAND_DISPLAY"))
    if platform.startswith("wayland") and not has_wayland:
        return f"QT_QPA_PLATFORM is {platform} but WAYLAND_DISPLAY is not set. {HEADLESS_HINT}"
    if not platform and not has_x and not has_wayland:
        return (
            "no display to open the desktop window on (neither DISPLAY nor WAYLAND_DISPLAY "
            f"is set: is this an SSH session or a server?). {HEADLESS_HINT}"
        )
    if platform == "xcb" and not has_x:
        return f"QT_QPA_PLATFORM is xcb but DISPLAY is not set. {HEADLESS_HINT}"
    return _probe(env)


def _probe(env: dict[str, str]) -> str | None:
    """Open Qt's platform plugin in a child process: a failure there cannot abort us."""
    env["QT_DEBUG_PLUGINS"] = "1"  # names the library that is really missing
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"the display did not answer within {PROBE_TIMEOUT_S:.0f} s. {HEADLESS_HINT}"
    if done.returncode == 0:
        return None
    return f"{_reason(done.stderr, env)}. {HEADLESS_HINT}"


def _reason(stderr: str, env: dict[str, str]) -> str:
    """The one fact in Qt's plugin output a user can act on."""
    connect = re.search(r"could not connect to display ?(\S*)", stderr)
    if connect:
        where = connect.group(1) or env.get("DISPLAY", "")
        return f"cannot connect to the X display {where} (is the X server running?)"
    missing = sorted(set(re.findall(r"(lib[\w.+-]+\.so[\d.]*): cannot open shared object", stderr)))
    if missing:
        names = ", ".join(missing)
        return (
            f"the desktop needs the system library {names}, which is not installed "
            "(on Debian/Ubuntu: apt-get install the package that provides it)"
        )
    last = [line for line in stderr.splitlines() if line.strip()][-1:] or ["no output"]
    return f"Qt cannot open a window here ({last[0].strip()})"
