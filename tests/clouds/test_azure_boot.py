"""End to end: an Azure VM made through the fake ARM server boots its custom data in a FakeVm,
and the real worker answers over TLS pinned by the handle's fingerprint."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.clouds.azure import AzureCloud, default_resources
from app.clouds.base import InstanceRequest
from app.protocol import HEALTH_PATH, bearer
from tests.clouds.fake_azure import FakeAzure, serve
from tests.clouds.fake_vm import FakeVm, free_port

SUB, RG = "sub-1", "rg-lab"
SUBNET = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/"
    "virtualNetworks/vnet-lab/subnets/workers"
)
BOOT_TIMEOUT_S = 30.0


async def healthz(address: str, sha256: str, *, timeout_s: float, vm: FakeVm, token: str) -> Any:
    """GET /healthz over TLS pinned to ``sha256`` as the driver, polling until it is up."""
    pin = aiohttp.Fingerprint(bytes.fromhex(sha256))
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(headers={"Authorization": bearer(token)}) as session:
        while True:
            try:
                async with session.get(f"https://{address}{HEALTH_PATH}", ssl=pin) as response:
                    response.raise_for_status()
                    return await response.json()
            except aiohttp.ClientConnectorError:
                if not vm.running or time.monotonic() > deadline:
                    raise AssertionError(f"no worker at {address}:\n{vm.console()}") from None
            await asyncio.sleep(0.1)


async def wait_stopped(vm: FakeVm, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while vm.running:
        assert time.monotonic() < deadline, f"{vm.name} still runs"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(90)
async def test_created_vm_runs_a_tls_worker_and_delete_stops_it(tmp_path: Path) -> None:
    state = FakeAzure(vm_root=tmp_path / "vms")
    port = free_port()
    async with serve(state) as base_url:
        config = {
            "subscription_id": SUB,
            "resource_group": RG,
            "location": "westeurope",
            "vm_size": "Standard_D4s_v3",
            "subnet_id": SUBNET,
            "allow_from": ["127.0.0.1"],
            "ssh_public_key": "ssh-ed25519 AAAA test",
            "worker_port": port,
            "base_url": base_url,
        }
        driver = AzureCloud(
            lambda pool: config,
            resources_factory=partial(default_resources, polling_interval_s=0.01),
        )
        try:
            created = await driver.create_instance(
                InstanceRequest(name="lb-w1", pool="gpu", cores_mcpu=2000, token="tok-secret")
            )
            assert created.address == f"127.0.0.1:{port}"
            boot = state.booted(RG, "lb-w1")
            assert boot is not None
            vm = await boot

            health = await healthz(
                created.address,
                created.handle["tls_sha256"],
                timeout_s=BOOT_TIMEOUT_S,
                vm=vm,
                token="tok-secret",
            )
            assert health["name"] == "lb-w1"
            assert (vm.home / "tls.key").stat().st_mode & 0o077 == 0  # umask 077

            wrong = aiohttp.Fingerprint(bytes(32))
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ServerFingerprintMismatch):
                    await session.get(f"https://{created.address}{HEALTH_PATH}", ssl=wrong)

            await driver.delete_instance("lb-w1")
            await wait_stopped(vm, 15)
        finally:
            await driver.close()


@pytest.mark.timeout(90)
async def test_evicted_vm_powers_off(tmp_path: Path) -> None:
    state = FakeAzure(vm_root=tmp_path / "vms")
    async with serve(state) as base_url:
        config = {
            "subscription_id": SUB,
            "resource_group": RG,
            "location": "westeurope",
            "vm_size": "Standard_D4s_v3",
            "subnet_id": SUBNET,
            "allow_from": ["127.0.0.1"],
            "ssh_public_key": "ssh-ed25519 AAAA test",
            "worker_port": free_port(),
            "base_url": base_url,
        }
        driver = AzureCloud(
            lambda pool: config,
            resources_factory=partial(default_resources, polling_interval_s=0.01),
        )
        try:
            created = await driver.create_instance(
                InstanceRequest(
                    name="lb-w1", pool="gpu", cores_mcpu=1000, token="tok", preemptible=True
                )
            )
            boot = state.booted(RG, "lb-w1")
            assert boot is not None
            vm = await boot
            await healthz(
                created.address,
                created.handle["tls_sha256"],
                timeout_s=BOOT_TIMEOUT_S,
                vm=vm,
                token="tok",
            )

            state.evict(RG, "lb-w1")
            await wait_stopped(vm, 15)
        finally:
            await driver.close()
