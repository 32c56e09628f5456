"""End to end: GceCloud creates a VM, the fake boots it, its start-up script starts a real
worker with TLS, and the driver's pin is the only certificate accepted."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.auth.credentials import AnonymousCredentials

from app.clouds.base import InstanceRequest
from app.clouds.gcp import GceCloud, GceResources
from app.protocol import bearer
from tests.clouds.fake_gce import FakeGce, serving
from tests.clouds.fake_vm import FakeVm, free_port

pytestmark = pytest.mark.timeout(90)
PROJECT = "lab-project"
ZONE = "us-central1-a"
BOOT_TIMEOUT_S = 45.0


def fake_resources(config: Mapping[str, Any]) -> GceResources:
    return GceResources(
        config["project"],
        api_endpoint=config["api_endpoint"],
        credentials=AnonymousCredentials(),
        poll_interval_s=0.01,
    )


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[tuple[FakeGce, str]]:
    gce = FakeGce(boot_dir=tmp_path / "vms")
    async with serving(gce) as endpoint:
        yield gce, endpoint


async def wait_for_health(
    session: aiohttp.ClientSession, url: str, pin: aiohttp.Fingerprint, vm: FakeVm
) -> dict[str, Any]:
    """Poll the worker's health page until it answers through TLS with this pin."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOOT_TIMEOUT_S
    while True:
        assert vm.running, f"the VM's start-up script ended:\n{vm.console()}"
        try:
            async with session.get(url, ssl=pin) as response:
                assert response.status == 200
                body: dict[str, Any] = await response.json()
                return body
        except aiohttp.ClientConnectorError:
            pass
        assert loop.time() < deadline, f"the worker never answered:\n{vm.console()}"
        await asyncio.sleep(0.1)


async def wait_until_stopped(vm: FakeVm) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    while vm.running:
        assert loop.time() < deadline, "the VM did not power off"
        await asyncio.sleep(0.05)


async def test_a_created_vm_serves_its_worker_over_pinned_tls(
    fake: tuple[FakeGce, str],
) -> None:
    gce, endpoint = fake
    port = free_port()
    pools = {
        "gpu": {
            "project": PROJECT,
            "zones": [ZONE],
            "machine_type": "n2-standard-8",
            "api_endpoint": endpoint,
            "allow_from": ["127.0.0.1"],
            "worker_port": port,
        }
    }
    cloud = GceCloud(pools.__getitem__, resources_factory=fake_resources)
    try:
        created = await cloud.create_instance(
            InstanceRequest(name="lb-gpu-1", pool="gpu", cores_mcpu=2000, token="s3cret-token")
        )
        assert created.address == f"127.0.0.1:{port}"
        vm = await gce.vm("lb-gpu-1")  # the VM boots a while after the insert is DONE
        url = f"https://{created.address}/healthz"
        pin = aiohttp.Fingerprint(bytes.fromhex(created.handle["tls_sha256"]))
        auth = {"Authorization": bearer("s3cret-token")}  # name and load only for the driver
        async with aiohttp.ClientSession(headers=auth) as session:
            health = await wait_for_health(session, url, pin, vm)
            assert health["name"] == "lb-gpu-1"

            wrong = aiohttp.Fingerprint(hashlib.sha256(b"another certificate").digest())
            with pytest.raises(aiohttp.ServerFingerprintMismatch):
                async with session.get(url, ssl=wrong):
                    pass

        # the secrets came from the metadata server into files only the worker reads
        assert (vm.home / "token").read_text().strip() == "s3cret-token"
        key_mode = stat.S_IMODE((vm.home / "tls.key").stat().st_mode)
        assert key_mode & 0o077 == 0

        await cloud.delete_instance("lb-gpu-1")
        await wait_until_stopped(vm)
        assert gce.vms == {} and gce.instances == {}
    finally:
        await cloud.close()


async def test_the_metadata_endpoint_wants_the_metadata_flavor_header(
    fake: tuple[FakeGce, str],
) -> None:
    gce, endpoint = fake
    key = (PROJECT, ZONE, "lb-x")
    gce.instances[key] = {"metadata": {"items": [{"key": "labbatch-token", "value": "tok"}]}}
    url = f"{endpoint}/fake-metadata/{PROJECT}/{ZONE}/lb-x/attributes"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/labbatch-token") as response:
            assert response.status == 403
        headers = {"Metadata-Flavor": "Google"}
        async with session.get(f"{url}/labbatch-token", headers=headers) as response:
            assert (response.status, await response.text()) == (200, "tok")
        async with session.get(f"{url}/nope", headers=headers) as response:
            assert response.status == 404
