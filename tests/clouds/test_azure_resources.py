"""AzureResources driving the real async azure-mgmt-compute client against a fake ARM server."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.identity import CredentialUnavailableError

from app.clouds.azure import AzureResources, VmSpec
from app.clouds.azure.credentials import AllowHttp
from app.clouds.azure.errors import UnknownVmSizeError
from app.errors import CloudError
from tests.clouds.fake_azure import FakeAzure
from tests.http_helpers import serve_app

SUB, RG, LOCATION = "sub-1", "rg-lab", "westeurope"
NETWORK = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network"
SUBNET = f"{NETWORK}/virtualNetworks/vnet-lab/subnets/workers"
NSG = f"{NETWORK}/networkSecurityGroups/labbatch-gpu-pool-worker"
pytestmark = pytest.mark.timeout(20)


class FakeCredential:
    """An async TokenCredential handing out a dummy token (or failing like a missing login)."""

    def __init__(self, *, unavailable: bool = False) -> None:
        self.unavailable = unavailable

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        if self.unavailable:
            raise CredentialUnavailableError("DefaultAzureCredential failed to get a token")
        return AccessToken("dummy-token", int(time.time()) + 3600)

    async def close(self) -> None:
        pass


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeAzure, str]]:
    state = FakeAzure()
    async with serve_app(state.app()) as base_url:
        yield state, base_url


def make_resources(base_url: str, credential: Any = None) -> AzureResources:
    return AzureResources(
        SUB,
        RG,
        LOCATION,
        base_url=base_url,
        credential=credential or FakeCredential(),
        polling_interval_s=0.01,
        per_call_policies=[AllowHttp()],
    )


@pytest.fixture
async def azure(fake: tuple[FakeAzure, str]) -> AsyncIterator[AzureResources]:
    resources = make_resources(fake[1])
    yield resources
    await resources.close()


def spec(name: str = "lb-w1", **changes: Any) -> VmSpec:
    fields: dict[str, Any] = {
        "name": name,
        "vm_size": "Standard_D4s_v3",
        "subnet_id": SUBNET,
        "nsg_id": NSG,
        "pool": "gpu-pool",
        "ssh_public_key": "ssh-ed25519 AAAA test",
        "custom_data": "#!/bin/sh\necho hello\n",
        "spot": True,
    } | changes
    return VmSpec(**fields)


async def test_create_sends_spot_vm_body_and_polls_to_success(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    state, _ = fake
    info = await azure.create_vm(spec(tags={"owner": "ana"}))

    assert info.name == "lb-w1"
    assert info.location == LOCATION
    assert info.provisioning_state == "Succeeded"
    assert state.operation_polls == 2  # InProgress, then Succeeded
    body = state.put_bodies[0]
    props = body["properties"]
    assert body["location"] == LOCATION
    assert body["tags"] == {
        "owner": "ana",
        "labbatch": "true",
        "labbatch-pool": "gpu-pool",
        "labbatch-instance": "lb-w1",
    }
    assert props["priority"] == "Spot"
    assert props["evictionPolicy"] == "Delete"
    assert props["billingProfile"] == {"maxPrice": -1}
    assert props["hardwareProfile"] == {"vmSize": "Standard_D4s_v3"}
    image = props["storageProfile"]["imageReference"]
    assert (image["publisher"], image["offer"], image["version"]) == (
        "Debian",
        "debian-12",
        "latest",
    )
    assert props["storageProfile"]["osDisk"]["diskSizeGB"] == 30
    assert base64.b64decode(props["osProfile"]["customData"]) == b"#!/bin/sh\necho hello\n"
    assert props["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0]["keyData"] == (
        "ssh-ed25519 AAAA test"
    )
    network = props["networkProfile"]
    assert network["networkApiVersion"] >= "2020-11-01"
    (nic,) = network["networkInterfaceConfigurations"]
    assert nic["name"] == "lb-w1-nic"
    assert nic["properties"]["primary"] is True
    assert nic["properties"]["deleteOption"] == "Delete"
    assert nic["properties"]["networkSecurityGroup"] == {"id": NSG}
    (ip_config,) = nic["properties"]["ipConfigurations"]
    assert ip_config["properties"]["subnet"] == {"id": SUBNET}
    public_ip = ip_config["properties"]["publicIPAddressConfiguration"]
    assert public_ip["sku"]["name"] == "Standard"
    assert public_ip["properties"] == {
        "deleteOption": "Delete",
        "publicIPAllocationMethod": "Static",
    }
    assert info.nic_id == f"{NETWORK}/networkInterfaces/lb-w1-nic"
    assert "secret" not in repr(spec(custom_data="secret"))  # token and TLS key stay out of logs


async def test_private_ip_vm_has_no_public_ip_and_reads_its_private_address(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    info = await azure.create_vm(spec(public_ip=False, custom_data="#!/bin/sh\n# tok\n"))

    props = fake[0].put_bodies[0]["properties"]
    ip_config = props["networkProfile"]["networkInterfaceConfigurations"][0]["properties"][
        "ipConfigurations"
    ][0]["properties"]
    assert "publicIPAddressConfiguration" not in ip_config
    assert fake[0].public_ips == {}
    assert info.nic_id is not None
    assert await azure.vm_address(info.nic_id, public=False) == "127.0.0.1"


async def test_public_address_is_read_from_the_nic_and_its_public_ip(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    info = await azure.create_vm(spec())
    assert info.nic_id is not None

    assert await azure.vm_address(info.nic_id, public=True) == "127.0.0.1"

    await azure.delete_vm("lb-w1")  # the NIC and the public IP go with the VM
    assert fake[0].nics == {}
    assert fake[0].public_ips == {}


async def test_standard_vm_has_no_spot_fields(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    await azure.create_vm(spec(spot=False))

    props = fake[0].put_bodies[0]["properties"]
    assert "priority" not in props
    assert "evictionPolicy" not in props
    assert "billingProfile" not in props


async def test_get_and_delete_are_idempotent(azure: AzureResources) -> None:
    await azure.create_vm(spec())

    got = await azure.get_vm("lb-w1")
    assert got is not None
    assert got.provisioning_state == "Succeeded"
    assert got.power_state == "running"
    assert got.tags["labbatch-pool"] == "gpu-pool"

    await azure.delete_vm("lb-w1")
    assert await azure.get_vm("lb-w1") is None
    await azure.delete_vm("lb-w1")  # already gone: no error


async def test_list_finds_only_labbatch_vms(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    state, _ = fake
    await azure.create_vm(spec("lb-w1"))
    await azure.create_vm(spec("lb-w2", spot=False))
    state.vms[(RG, "someone-else")] = {
        "name": "someone-else",
        "location": LOCATION,
        "tags": {"team": "web"},
        "properties": {"provisioningState": "Succeeded"},
        "_power": "running",
    }
    state.vms[("other-rg", "lb-x")] = dict(state.vms[(RG, "lb-w1")], name="lb-x")

    found = await azure.list_labbatch_vms()

    assert sorted(vm.name for vm in found) == ["lb-w1", "lb-w2"]


async def test_quota_error_is_transient_and_says_what_to_do(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    fake[0].fail_next_put_with_quota()

    with pytest.raises(CloudError) as caught:
        await azure.create_vm(spec())

    assert caught.value.transient
    message = str(caught.value)
    assert "standardDSv3Family" in message
    assert "quota increase" in message
    assert "another VM size or region" in message


@pytest.mark.parametrize("code", ["AllocationFailed", "ZonalAllocationFailed", "SkuNotAvailable"])
async def test_allocation_failure_is_transient(
    fake: tuple[FakeAzure, str], azure: AzureResources, code: str
) -> None:
    fake[0].fail_next_put(409, code, "Allocation failed. We do not have sufficient capacity.")

    with pytest.raises(CloudError) as caught:
        await azure.create_vm(spec())

    assert caught.value.transient
    assert code in str(caught.value)


async def test_rejected_token_is_permanent_and_says_az_login(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    fake[0].auth_fails = True

    with pytest.raises(CloudError) as caught:
        await azure.get_vm("lb-w1")

    assert not caught.value.transient
    assert "az login" in str(caught.value)
    assert "dummy-token" not in str(caught.value)


async def test_missing_login_is_permanent_and_says_az_login(fake: tuple[FakeAzure, str]) -> None:
    resources = make_resources(fake[1], FakeCredential(unavailable=True))
    try:
        with pytest.raises(CloudError) as caught:
            await resources.create_vm(spec())
    finally:
        await resources.close()

    assert not caught.value.transient
    assert "az login" in str(caught.value)


async def test_bad_request_is_permanent(fake: tuple[FakeAzure, str], azure: AzureResources) -> None:
    fake[0].fail_next_put(400, "InvalidParameter", "The value of parameter vmSize is invalid.")

    with pytest.raises(CloudError) as caught:
        await azure.create_vm(spec(vm_size="Standard_Nope"))

    assert not caught.value.transient
    assert "vmSize" in str(caught.value)


async def test_vm_sizes_of_the_location_asked_once(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    sizes = await azure.vm_sizes()

    assert ("Standard_D4s_v5", 4, 16384) in sizes
    assert sizes == sorted(sizes)
    assert await azure.vm_sizes() == sizes
    assert fake[0].vm_size_lists == 1


async def test_a_size_the_location_lacks_is_permanent_without_the_size_list(
    azure: AzureResources,
) -> None:
    with pytest.raises(UnknownVmSizeError) as caught:
        await azure.create_vm(spec(vm_size="Standard_D4z_v9"))

    assert not caught.value.transient
    message = str(caught.value)
    assert "The requested VM size Standard_D4z_v9 is not available" in message
    assert "Standard_B2s" not in message


async def test_evicted_spot_vm_is_gone_or_deallocated(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    state, _ = fake
    await azure.create_vm(spec("lb-w1"))
    await azure.create_vm(spec("lb-w2"))

    state.evict(RG, "lb-w1")
    state.evict(RG, "lb-w2", deallocate=True)

    assert await azure.get_vm("lb-w1") is None
    evicted = await azure.get_vm("lb-w2")
    assert evicted is not None
    assert evicted.power_state == "deallocated"


async def test_allocation_failure_reported_by_the_operation_is_transient(
    fake: tuple[FakeAzure, str], azure: AzureResources
) -> None:
    fake[0].fail_next_operation("ZonalAllocationFailed", "Allocation failed in zone 1.")

    with pytest.raises(CloudError) as caught:
        await azure.create_vm(spec())

    assert caught.value.transient
    assert "ZonalAllocationFailed" in str(caught.value)
