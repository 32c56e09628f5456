"""The pool's network security group, written as Microsoft.Network REST through the compute
client's pipeline, against the fake ARM server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from app.clouds.azure import AzureCloud, AzureResources, default_resources
from app.clouds.azure.credentials import AllowHttp
from app.clouds.base import InstanceRequest
from app.errors import CloudError
from tests.clouds.fake_azure import FakeAzure, serve
from tests.clouds.test_azure_resources import FakeCredential

SUB, RG, LOCATION = "sub-1", "rg-lab", "westeurope"
NETWORK = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
SUBNET = f"{NETWORK}/virtualNetworks/vnet-lab/subnets/workers"
NSG_NAME = "labbatch-gpu-worker"
pytestmark = pytest.mark.timeout(20)


class Env:
    """The fake, one pool's configuration and a driver."""

    def __init__(self, state: FakeAzure, base_url: str) -> None:
        self.state = state
        self.base_url = base_url
        self.config: dict[str, Any] = {
            "subscription_id": SUB,
            "resource_group": RG,
            "location": LOCATION,
            "vm_size": "Standard_D4s_v3",
            "subnet_id": SUBNET,
            "allow_from": ["203.0.113.7", "198.51.100.0/24"],
            "ssh_public_key": "ssh-ed25519 AAAA test",
            "base_url": base_url,
        }
        self.driver = self.new_driver()

    def new_driver(self) -> AzureCloud:
        """A driver as a new LabBatch process would make it."""
        return AzureCloud(
            lambda pool: self.config,
            resources_factory=partial(default_resources, polling_interval_s=0.01),
        )

    def nsg(self) -> dict[str, Any]:
        return self.state.nsgs[(RG, NSG_NAME)]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    state = FakeAzure()
    async with serve(state) as base_url:
        env = Env(state, base_url)
        yield env
        await env.driver.close()


def request(name: str) -> InstanceRequest:
    return InstanceRequest(name=name, pool="gpu", cores_mcpu=4000, token="tok-secret")


def worker_rule(nsg: dict[str, Any]) -> dict[str, Any]:
    (rule,) = [r for r in nsg["properties"]["securityRules"] if r["name"] == "labbatch-worker"]
    props: dict[str, Any] = rule["properties"]
    return props


async def test_nsg_is_made_once_with_the_worker_rule(env: Env) -> None:
    await env.driver.create_instance(request("lb-w1"))
    await env.driver.create_instance(request("lb-w2"))

    assert len(env.state.nsg_put_bodies) == 1
    nsg = env.nsg()
    assert nsg["location"] == LOCATION
    assert nsg["properties"]["provisioningState"] == "Succeeded"  # the driver waited for it
    rule = worker_rule(nsg)
    assert rule["direction"] == "Inbound"
    assert rule["access"] == "Allow"
    assert rule["protocol"] == "Tcp"
    assert rule["destinationPortRange"] == "8443"
    assert rule["sourceAddressPrefixes"] == ["203.0.113.7/32", "198.51.100.0/24"]


async def test_nsg_is_updated_when_allow_from_or_the_port_changes(env: Env) -> None:
    await env.driver.create_instance(request("lb-w1"))

    env.config["allow_from"] = ["192.0.2.10"]
    await env.driver.create_instance(request("lb-w2"))
    assert worker_rule(env.nsg())["sourceAddressPrefixes"] == ["192.0.2.10/32"]

    env.config["worker_port"] = 9443
    await env.driver.create_instance(request("lb-w3"))
    assert worker_rule(env.nsg())["destinationPortRange"] == "9443"
    assert len(env.state.nsg_put_bodies) == 3


async def test_a_new_process_leaves_a_matching_nsg_alone(env: Env) -> None:
    await env.driver.create_instance(request("lb-w1"))

    second = env.new_driver()
    try:
        await second.create_instance(request("lb-w2"))
    finally:
        await second.close()

    assert len(env.state.nsg_put_bodies) == 1


async def test_rules_added_by_hand_are_kept(env: Env) -> None:
    await env.driver.create_instance(request("lb-w1"))
    ssh = {"name": "ssh", "properties": {"priority": 900, "destinationPortRange": "22"}}
    env.nsg()["properties"]["securityRules"].append(ssh)

    env.config["allow_from"] = ["192.0.2.10"]
    await env.driver.create_instance(request("lb-w2"))

    names = [r["name"] for r in env.nsg()["properties"]["securityRules"]]
    assert sorted(names) == ["labbatch-worker", "ssh"]


async def test_forbidden_nsg_write_names_the_role_and_the_manual_command(env: Env) -> None:
    env.state.nsg_write_forbidden = True

    with pytest.raises(CloudError) as caught:
        await env.driver.create_instance(request("lb-w1"))

    message = str(caught.value)
    assert not caught.value.transient
    assert "AuthorizationFailed" in message
    assert "Network Contributor" in message
    assert RG in message
    assert f"az network nsg create -g {RG} -n {NSG_NAME} -l {LOCATION}" in message
    assert "--destination-port-ranges 8443" in message
    assert "203.0.113.7/32 198.51.100.0/24" in message
    assert env.state.put_bodies == []  # no VM without its NSG


async def test_nsg_made_by_hand_needs_no_write(env: Env) -> None:
    await env.driver.create_instance(request("lb-w1"))  # stands in for the manual set-up
    env.state.nsg_write_forbidden = True

    second = env.new_driver()
    try:
        await second.create_instance(request("lb-w2"))
    finally:
        await second.close()


async def test_missing_login_on_the_network_call_says_az_login(env: Env) -> None:
    resources = AzureResources(
        SUB,
        RG,
        LOCATION,
        base_url=env.base_url,
        credential=FakeCredential(unavailable=True),
        polling_interval_s=0.01,
        per_call_policies=[AllowHttp()],
    )
    try:
        with pytest.raises(CloudError) as caught:
            await resources.ensure_worker_nsg("gpu", 8443, ("203.0.113.7/32",))
    finally:
        await resources.close()

    assert "az login" in str(caught.value)
    assert not caught.value.transient


async def test_an_nsg_made_with_the_az_command_is_accepted_as_is(env: Env) -> None:
    env.config["allow_from"] = ["203.0.113.7"]
    rule = {  # as Azure shows a rule made with one --source-address-prefixes value
        "name": "labbatch-worker",
        "properties": {
            "protocol": "Tcp",
            "access": "Allow",
            "direction": "Inbound",
            "priority": 1000,
            "sourceAddressPrefix": "203.0.113.7",
            "sourceAddressPrefixes": [],
            "destinationPortRange": "8443",
            "provisioningState": "Succeeded",
        },
    }
    env.state.nsgs[(RG, NSG_NAME)] = {
        "id": f"{NETWORK}/networkSecurityGroups/{NSG_NAME}",
        "name": NSG_NAME,
        "location": LOCATION,
        "properties": {"provisioningState": "Succeeded", "securityRules": [rule]},
    }
    env.state.nsg_write_forbidden = True

    await env.driver.create_instance(request("lb-w1"))

    assert env.state.nsg_put_bodies == []
