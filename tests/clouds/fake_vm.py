"""A fake cloud VM: runs an instance's real start-up script with `sh` on 127.0.0.1.

The script does what it does on a real VM (writes the token, certificate and key, starts the
worker agent with TLS) except the pip install: LABBATCH_WORKER_PYTHON points it at this test
run's Python, which has the worker already. Each VM has its own LABBATCH_HOME and its own
process session, so stopping it stops the worker and every job the worker started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STOP_GRACE_S = 5.0


def free_port() -> int:
    """A port free on 127.0.0.1 now: a pool's ``worker_port`` for its fake VMs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FakeVm:
    """One booted fake VM; ``await stop()`` is its power-off."""

    def __init__(self, name: str, home: Path, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.home = home
        self.proc = proc

    @classmethod
    async def boot(
        cls, name: str, script: str, root: Path, *, metadata_url: str = "", host: str = "127.0.0.1"
    ) -> FakeVm:
        """Run the start-up script; its worker listens on ``host`` (a loopback address of
        its own when several VMs share the pool's port)."""
        home = root / name
        home.mkdir(parents=True, exist_ok=True)
        script_path = home / "startup.sh"
        script_path.write_text(script)
        env = {
            **os.environ,
            "LABBATCH_HOME": str(home),
            "LABBATCH_WORKER_PYTHON": sys.executable,
            "LABBATCH_WORKER_HOST": host,
            "PYTHONPATH": str(REPO),
        }
        env.pop("LABBATCH_WORKER_TOKEN", None)
        if metadata_url:
            env["LABBATCH_METADATA_URL"] = metadata_url
        with (home / "console.log").open("ab") as console:
            proc = await asyncio.create_subprocess_exec(
                "sh",
                str(script_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=console,
                stderr=console,
                env=env,
                cwd=home,
                start_new_session=True,
            )
        return cls(name, home, proc)

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def console(self) -> str:
        """What the start-up script and the worker printed (for failure messages)."""
        path = self.home / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def stop(self) -> None:
        """Power off: SIGTERM the whole session, SIGKILL what is left after a grace period."""
        if self.proc.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                await asyncio.wait_for(self.proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                continue
            if sig == signal.SIGTERM:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # jobs left in the session
            return
