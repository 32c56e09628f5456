"""AzureCloud (the CloudDriver of Azure) against the fake ARM server with the real SDK client."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from app.clouds.azure import AzureCloud, default_resources
from app.clouds.base import InstanceRequest
from app.errors import CloudError
from tests.clouds.fake_azure import FakeAzure, serve

SUB, RG, LOCATION = "sub-1", "rg-lab", "westeurope"
NETWORK = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
SUBNET = f"{NETWORK}/virtualNetworks/vnet-lab/subnets/workers"
POLL_S = 0.02
pytestmark = pytest.mark.timeout(20)


def pool_config(**changes: Any) -> dict[str, Any]:
    return {
        "subscription_id": SUB,
        "resource_group": RG,
        "location": LOCATION,
        "vm_size": "Standard_D4s_v3",
        "fallback_vm_sizes": ["Standard_D4s_v5", "Standard_D4as_v5"],
        "subnet_id": SUBNET,
        "allow_from": ["203.0.113.7"],
        "ssh_public_key": "ssh-ed25519 AAAA test",
    } | changes


class Env:
    """The fake, the pools' configuration and a driver built against them."""

    def __init__(self, state: FakeAzure, base_url: str) -> None:
        self.state = state
        self.pools: dict[str, dict[str, Any]] = {"gpu": pool_config(base_url=base_url)}
        self.lost: list[tuple[str, str]] = []
        self.lost_event = asyncio.Event()
        self.driver = AzureCloud(
            self.pools.__getitem__,
            resources_factory=partial(default_resources, polling_interval_s=0.01),
            poll_interval_s=POLL_S,
        )
        self.driver.on_lost(self._on_lost)

    def _on_lost(self, name: str, reason: str) -> None:
        self.lost.append((name, reason))
        self.lost_event.set()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    state = FakeAzure()
    async with serve(state) as base_url:
        env = Env(state, base_url)
        yield env
        await env.driver.close()


async def sh_syntax_errors(script: str) -> str:
    """What `sh -n` (parse, do not run) says about the script; empty when it parses."""
    proc = await asyncio.create_subprocess_exec(
        "sh",
        "-n",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate(script.encode())
    return output.decode() if proc.returncode else ""


def request(name: str = "lb-w1", **changes: Any) -> InstanceRequest:
    fields: dict[str, Any] = {
        "name": name,
        "pool": "gpu",
        "cores_mcpu": 4000,
        "token": "tok-secret",
        "preemptible": True,
    } | changes
    return InstanceRequest(**fields)


async def test_create_sends_spot_tags_network_and_a_worker_script(env: Env) -> None:
    created = await env.driver.create_instance(request())

    assert created.name == "lb-w1"
    assert created.address == "127.0.0.1:8443"  # the public IP the fake gave the VM's NIC
    assert created.location == LOCATION
    assert created.handle["resource_group"] == RG
    assert created.handle["vm_size"] == "Standard_D4s_v3"
    assert created.handle["port"] == 8443
    assert len(bytes.fromhex(created.handle["tls_sha256"])) == 32
    body = env.state.put_bodies[0]
    assert body["tags"]["labbatch-pool"] == "gpu"
    assert body["tags"]["labbatch-instance"] == "lb-w1"
    props = body["properties"]
    assert (props["priority"], props["evictionPolicy"]) == ("Spot", "Delete")
    (nic,) = props["networkProfile"]["networkInterfaceConfigurations"]
    assert nic["properties"]["networkSecurityGroup"] == {
        "id": f"{NETWORK}/networkSecurityGroups/labbatch-gpu-worker"
    }
    ip_config = nic["properties"]["ipConfigurations"][0]["properties"]
    assert ip_config["subnet"] == {"id": SUBNET}
    assert ip_config["publicIPAddressConfiguration"]["properties"]["deleteOption"] == "Delete"
    script = base64.b64decode(props["osProfile"]["customData"]).decode()
    assert script.startswith("#!/bin/sh\n")
    assert "tok-secret" in script
    assert "--tls-cert" in script and "--port 8443" in script and "--cores 4" in script
    assert "-----BEGIN CERTIFICATE-----" in script
    assert "-----BEGIN PRIVATE KEY-----" in script
    assert await sh_syntax_errors(script) == ""
    assert "tok-secret" not in str(body["tags"])
    assert "tok-secret" not in str(created.handle)


async def test_the_custom_data_pins_the_certificate_of_the_handle(env: Env) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    created = await env.driver.create_instance(request())

    script = base64.b64decode(env.state.put_bodies[0]["properties"]["osProfile"]["customData"])
    begin = script.index(b"-----BEGIN CERTIFICATE-----")
    end = script.index(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----")
    cert = x509.load_pem_x509_certificate(script[begin:end])
    assert cert.fingerprint(hashes.SHA256()).hex() == created.handle["tls_sha256"]


async def test_private_ip_pool_makes_no_public_ip_and_dials_the_private_address(
    env: Env,
) -> None:
    env.pools["gpu"].update(use_private_ip=True, worker_port=9443, worker_requirement="lb==1")

    created = await env.driver.create_instance(request(preemptible=False))

    props = env.state.put_bodies[0]["properties"]
    ip_config = props["networkProfile"]["networkInterfaceConfigurations"][0]["properties"][
        "ipConfigurations"
    ][0]["properties"]
    assert "publicIPAddressConfiguration" not in ip_config
    assert "priority" not in props
    assert created.address == "127.0.0.1:9443"
    assert created.handle["port"] == 9443
    script = base64.b64decode(props["osProfile"]["customData"]).decode()
    assert "--port 9443" in script
    assert "lb==1" in script


async def test_quota_error_falls_back_to_the_next_vm_size(env: Env) -> None:
    env.state.fail_next_put_with_quota()

    created = await env.driver.create_instance(request())

    sizes = [b["properties"]["hardwareProfile"]["vmSize"] for b in env.state.put_bodies]
    assert sizes == ["Standard_D4s_v3", "Standard_D4s_v5"]
    assert created.handle["vm_size"] == "Standard_D4s_v5"


async def test_every_size_failing_is_one_transient_error_naming_each(env: Env) -> None:
    env.pools["gpu"]["fallback_vm_sizes"] = ["Standard_D4s_v5"]
    env.state.fail_next_put_with_quota()
    # the second size fails in its long-running operation, leaving a Failed VM to clean up
    env.state.fail_next_operation("AllocationFailed", "No capacity.")

    with pytest.raises(CloudError) as caught:
        await env.driver.create_instance(request())

    assert caught.value.transient
    message = str(caught.value)
    assert "Standard_D4s_v3: " in message
    assert "quota" in message
    assert "Standard_D4s_v5: " in message
    assert "AllocationFailed" in message
    assert env.state.vms == {}  # the Failed VM was removed


async def test_permanent_error_stops_at_the_first_size(env: Env) -> None:
    env.state.fail_next_put(400, "InvalidParameter", "The value of parameter vmSize is invalid.")

    with pytest.raises(CloudError) as caught:
        await env.driver.create_instance(request())

    assert not caught.value.transient
    assert len(env.state.put_bodies) == 1


@pytest.mark.parametrize(
    ("key", "hint"),
    [("subnet_id", "existing subnet"), ("ssh_public_key", "SSH key"), ("allow_from", "ifconfig")],
)
async def test_missing_setting_names_pool_and_key(env: Env, key: str, hint: str) -> None:
    del env.pools["gpu"][key]

    with pytest.raises(CloudError) as caught:
        await env.driver.create_instance(request())

    assert "'gpu'" in str(caught.value)
    assert repr(key) in str(caught.value)
    assert hint in str(caught.value)
    assert env.state.put_bodies == []


async def test_adopt_is_true_only_for_a_running_vm(env: Env) -> None:
    created = await env.driver.create_instance(request("lb-w1"))
    await env.driver.create_instance(request("lb-w2"))
    env.state.evict(RG, "lb-w2", deallocate=True)

    assert await env.driver.adopt_instance("lb-w1", created.handle)
    assert not await env.driver.adopt_instance("lb-w2", created.handle)
    assert not await env.driver.adopt_instance("lb-gone", created.handle)


async def test_delete_is_idempotent(env: Env) -> None:
    await env.driver.create_instance(request())

    await env.driver.delete_instance("lb-w1")
    await env.driver.delete_instance("lb-w1")

    assert env.state.vms == {}


async def test_evicted_spot_vm_is_reported_preempted_once(env: Env) -> None:
    await env.driver.create_instance(request("lb-w1"))
    await env.driver.create_instance(request("lb-w2"))

    env.state.evict(RG, "lb-w1")
    await asyncio.wait_for(env.lost_event.wait(), 5)
    await asyncio.sleep(POLL_S * 5)  # more polls: still reported once

    assert env.lost == [("lb-w1", "preempted")]


async def test_deallocated_spot_vm_is_preempted_and_its_disk_freed_on_delete(env: Env) -> None:
    await env.driver.create_instance(request())

    env.state.evict(RG, "lb-w1", deallocate=True)
    await asyncio.wait_for(env.lost_event.wait(), 5)
    await env.driver.delete_instance("lb-w1")

    assert env.lost == [("lb-w1", "preempted")]
    assert env.state.vms == {}


async def test_vm_we_delete_is_not_reported(env: Env) -> None:
    await env.driver.create_instance(request())

    await env.driver.delete_instance("lb-w1")
    await asyncio.sleep(POLL_S * 5)

    assert env.lost == []


async def test_orphans_are_listed_and_deleted(env: Env) -> None:
    await env.driver.create_instance(request("lb-w1"))
    await env.driver.create_instance(request("lb-w2"))
    env.pools["other"] = dict(env.pools["gpu"])
    await env.driver.create_instance(request("lb-o1", pool="other"))

    assert await env.driver.orphans("gpu", {"lb-w1"}) == ["lb-w2"]
    assert await env.driver.delete_orphans("gpu", {"lb-w1"}) == ["lb-w2"]
    assert sorted(name for _, name in env.state.vms) == ["lb-o1", "lb-w1"]


async def test_close_deletes_owned_vms(env: Env) -> None:
    await env.driver.create_instance(request("lb-w1"))
    await env.driver.create_instance(request("lb-w2", preemptible=False))

    await env.driver.close()

    assert env.state.vms == {}
    assert env.lost == []


async def test_an_unknown_vm_size_names_the_sizes_with_the_same_cores(env: Env) -> None:
    env.pools["gpu"]["vm_size"] = "Standard_D4z_v9"

    with pytest.raises(CloudError) as caught:
        await env.driver.create_instance(request())

    assert not caught.value.transient
    message = str(caught.value)
    assert message.startswith(
        "Azure pool 'gpu': VM size Standard_D4z_v9 is not offered in westeurope; sizes there "
        "with 4 cores: Standard_D4as_v5, Standard_D4s_v3, Standard_D4s_v5, Standard_E4s_v5, "
        "Standard_F4s_v2 (`labbatch pool offers gpu` lists them"
    )
    assert "Standard_D2s_v3" not in message  # ARM's list of every size is left out
    assert "\n" not in message
    assert len(env.state.put_bodies) == 1  # a setting to fix: the fallback sizes are not tried
    assert env.state.vms == {}


async def test_sku_not_available_stays_transient_and_falls_back(env: Env) -> None:
    env.state.fail_next_put(
        409,
        "SkuNotAvailable",
        "The requested size for resource '/subscriptions/sub-1/resourceGroups/rg-lab/providers/"
        "Microsoft.Compute/virtualMachines/lb-w1' is currently not available in location "
        "'westeurope' zones '' for subscription 'sub-1'. Please try another size or deploy to a "
        "different location or zones. See https://aka.ms/azureskunotavailable for details.",
    )

    created = await env.driver.create_instance(request())

    assert created.handle["vm_size"] == "Standard_D4s_v5"
    assert env.state.vm_size_lists == 0
