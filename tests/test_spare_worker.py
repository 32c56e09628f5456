"""A spare local worker (started before it is needed) becomes the local cloud's first worker."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
import pytest

from app.clouds.base import InstanceRequest
from app.clouds.local import LocalCloud, start_spare
from app.protocol import HEALTH_PATH, bearer
from tests.test_cli import labbatch

TOKEN = "t0ken-for-the-spare"


async def _health(address: str, token: str) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://{address}{HEALTH_PATH}", headers={"Authorization": bearer(token)}
        ) as resp,
    ):
        return dict(await resp.json())


async def _gone(pid: int, deadline_s: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while loop.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.mark.timeout(60)
def test_the_spare_takes_its_name_and_token_and_a_later_driver_adopts_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        root = tmp_path / "workers"
        spare = await start_spare(root)
        cloud = LocalCloud(root, spare=spare)
        request = InstanceRequest(name="local-spare1", pool="local", cores_mcpu=1000, token=TOKEN)
        created = await cloud.create_instance(request)
        assert created.handle["pid"] == spare.proc.pid  # the spare, not a new process
        health = await _health(created.address, TOKEN)
        assert health["name"] == "local-spare1"
        assert (root / "local-spare1" / "worker.log").exists()
        assert not list(root.glob("spare-*.log"))  # its log moved into its work dir
        # the token came through the pipe: not in the worker's environment
        environ = await asyncio.to_thread(Path(f"/proc/{spare.proc.pid}/environ").read_bytes)
        assert TOKEN.encode() not in environ

        await cloud.release()  # the next driver adopts it by pid and start time
        later = LocalCloud(root)
        assert await later.adopt_instance("local-spare1", json.loads(json.dumps(created.handle)))
        assert not await later.adopt_instance("local-other", {"pid": spare.proc.pid})
        await later.delete_instance("local-spare1")
        assert await _gone(spare.proc.pid)
        await cloud.close()

    asyncio.run(scenario())


@pytest.mark.timeout(60)
def test_a_spare_nobody_takes_ends_with_its_cloud(tmp_path: Path) -> None:
    async def scenario() -> None:
        root = tmp_path / "workers"
        spare = await start_spare(root)
        cloud = LocalCloud(root, spare=spare)
        await cloud.close()
        assert spare.proc.returncode is not None
        assert not list(root.glob("spare-*.log"))

    asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_run_uses_the_spare_and_leaves_no_spare_behind(tmp_path: Path, lb_home: Path) -> None:
    dag = tmp_path / "one.yaml"
    dag.write_text("version: 1\nname: one\njobs:\n  - {name: a, command: echo hi}\n")
    done = labbatch("run", str(dag))
    assert done.returncode == 0, done.stderr
    workers = lb_home.with_name(f"{lb_home.name}-work") / "workers"
    assert not list(workers.glob("spare-*.log"))
    [log] = list(workers.glob("local-*/worker.log"))
    assert "listening on 127.0.0.1" in log.read_text()
    assert labbatch("log", "1", "a").stdout == "hi\n"
    missing = labbatch("run", str(tmp_path / "missing.yaml"))  # the spare ends with the error
    assert missing.returncode != 0
    assert not list(workers.glob("spare-*.log"))
