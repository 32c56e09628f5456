"""Start the storage emulators the storage tests run against: gcp-storage-emulator and Azurite.

Both are real servers on 127.0.0.1 started as child processes; a fixture waits until the port
accepts connections (polling with a deadline) and stops the process afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# Azurite's published well-known development account (not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
# azure-storage-blob 12.31 speaks a newer API version than Azurite 3.35 accepts.
AZURITE_API_VERSION = "2025-11-05"
AZURITE_DIR_ENV = "LABBATCH_AZURITE_DIR"
AZURITE_DEFAULT_DIR = Path.home() / ".cache" / "labbatch-azurite"


def free_port() -> int:
    """A port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], deadline_s: float) -> None:
    """Poll until ``port`` accepts a connection; fail if the process dies or time runs out."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"emulator not listening on {port} after {deadline_s} s")


@contextmanager
def _running(cmd: list[str], port: int, deadline_s: float) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc, deadline_s)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True, slots=True)
class Gcs:
    """A running GCS emulator."""

    endpoint: str


@dataclass(frozen=True, slots=True)
class Azurite:
    """A running Azurite blob service."""

    port: int

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[Gcs]:
    """gcp-storage-emulator on a free port, in memory."""
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    port = free_port()
    cmd = [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
    with _running(cmd, port, 20):
        yield Gcs(f"http://127.0.0.1:{port}")


def azurite_exe() -> Path | None:
    """Where .ci/run installed Azurite (npm), or None."""
    root = Path(os.environ.get(AZURITE_DIR_ENV, AZURITE_DEFAULT_DIR))
    exe = root / "node_modules" / ".bin" / "azurite-blob"
    return exe if exe.exists() and shutil.which("node") else None


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's blob service on a free port (installed by .ci/run into ~/.cache)."""
    exe = azurite_exe()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"Azurite is not installed in {AZURITE_DEFAULT_DIR} (see .ci/run)")
        pytest.skip(f"Azurite not installed (npm install azurite in {AZURITE_DEFAULT_DIR})")
    port = free_port()
    where = tmp_path_factory.mktemp("azurite")
    cmd = [
        str(exe),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(where),
        "--silent",
        "--disableTelemetry",
    ]
    with _running(cmd, port, 30):
        yield Azurite(port)
