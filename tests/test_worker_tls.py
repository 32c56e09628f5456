"""Cloud workers: TLS with a certificate the driver made, a token read from a file, and the
driver's connection that accepts only that certificate."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from app.clouds.bootstrap import make_tls_identity
from app.engine.workers.connection import DialError, WorkerConnection
from app.protocol import HEALTH_PATH, TOKEN_ENV, Hello, Message, bearer
from tests.worker_helpers import REPO_ROOT, WorkerProcess, start_worker

pytestmark = pytest.mark.timeout(60)
TOKEN = "file-token-0123456789"


async def tls_worker(tmp_path: Path, name: str = "test-worker") -> tuple[WorkerProcess, str]:
    """A worker started as a cloud VM's start-up script starts it; returns it and its pin."""
    tls = make_tls_identity(name)
    (tmp_path / "tls.crt").write_text(tls.cert_pem)
    (tmp_path / "tls.key").write_text(tls.key_pem)
    (tmp_path / "token").write_text(TOKEN + "\n")
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    worker = await start_worker(
        tmp_path,
        token="",  # nothing in the environment: the token comes from the file
        env=env,
        extra_args=[
            "--token-file",
            str(tmp_path / "token"),
            "--tls-cert",
            str(tmp_path / "tls.crt"),
            "--tls-key",
            str(tmp_path / "tls.key"),
        ],
    )
    return worker, tls.sha256


async def test_the_driver_dials_a_tls_worker_with_its_pinned_certificate(tmp_path: Path) -> None:
    worker, pin = await tls_worker(tmp_path)
    address = f"127.0.0.1:{worker.port}"
    hello: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
    try:
        conn = await WorkerConnection.dial("test-worker", address, TOKEN, tls_sha256=pin)
        conn.start(lambda _c, m: hello.done() or hello.set_result(m), lambda _c: None)
        message = await asyncio.wait_for(hello, 10)
        assert isinstance(message, Hello) and message.instance == "test-worker"
        await conn.close()

        other_pin = make_tls_identity("impostor").sha256
        with pytest.raises(DialError, match="another certificate"):
            await WorkerConnection.dial("test-worker", address, TOKEN, tls_sha256=other_pin)
        with pytest.raises(DialError):  # the token from the file is the one it checks
            await WorkerConnection.dial("test-worker", address, "wrong-token", tls_sha256=pin)
        with pytest.raises(DialError):  # no plain http on a TLS worker
            await WorkerConnection.dial("test-worker", address, TOKEN)
    finally:
        await worker.stop()


async def test_health_answers_over_https_only_with_the_pin(tmp_path: Path) -> None:
    worker, pin = await tls_worker(tmp_path)
    url = f"https://127.0.0.1:{worker.port}{HEALTH_PATH}"
    try:
        async with aiohttp.ClientSession(headers={"Authorization": bearer(TOKEN)}) as session:
            async with session.get(url, ssl=aiohttp.Fingerprint(bytes.fromhex(pin))) as response:
                assert response.status == 200
                assert (await response.json())["name"] == "test-worker"
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(url)  # a self-signed certificate no CA vouches for
        assert "with TLS" in worker.stderr_text()
        assert TOKEN not in worker.stderr_text()
    finally:
        await worker.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "x.crt"], "--tls-cert and --tls-key go together"),
        (["--token-file", "missing"], "cannot read the token file"),
        (["--tls-cert", "x.crt", "--tls-key", "x.key"], "cannot load the TLS certificate"),
    ],
)
async def test_bad_tls_or_token_settings_stop_the_worker_with_a_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if "--token-file" not in args:
        env[TOKEN_ENV] = TOKEN
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.worker", "--port", "0", "--name", "w", "--cores", "1",
        "--work-dir", str(tmp_path / "work"), *args,
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert message in err.decode()
    assert b"READY" not in out


async def test_a_worker_that_accepts_but_never_answers_fails_the_dial_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a VM whose port is open while its worker stalls: the TCP connect succeeds at once, the
    # TLS handshake (or the WebSocket upgrade) never ends; the dial gives up as a whole
    monkeypatch.setattr("app.engine.workers.connection.DIAL_TOTAL_TIMEOUT_S", 0.5)
    accepted: list[asyncio.StreamWriter] = []

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        for pin in (make_tls_identity("test-worker").sha256, None):
            async with asyncio.timeout(10):
                with pytest.raises(DialError, match="no answer within"):
                    await WorkerConnection.dial(
                        "test-worker", f"127.0.0.1:{port}", TOKEN, tls_sha256=pin
                    )
        assert len(accepted) == 2
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
