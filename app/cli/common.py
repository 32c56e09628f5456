"""What every command module shares: exit codes, JSON printing, stop signals."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM (and SIGINT) set ``stop`` so the driver shuts down cleanly."""
    import asyncio  # not at the top: `labbatch --help` loads this module and no asyncio

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
