"""Azure pool configuration: the module API the engine calls through importlib, credentials."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from app.clouds.azure.config import parse_config
from app.clouds.azure.credentials import AllowHttp, StaticCredential, loopback_auth
from app.errors import CloudError

SUBNET = (
    "/subscriptions/sub-1/resourceGroups/rg-net/providers/Microsoft.Network/"
    "virtualNetworks/vnet-lab/subnets/workers"
)
pytestmark = pytest.mark.timeout(10)
azure = importlib.import_module("app.clouds.azure")  # as the engine reaches it


def config(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "subscription_id": "sub-1",
        "resource_group": "rg-lab",
        "location": "westeurope",
        "vm_size": "Standard_D4s_v3",
        "subnet_id": SUBNET,
        "allow_from": ["203.0.113.7"],
        "ssh_public_key": "ssh-ed25519 AAAA test",
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def test_a_minimal_config_gets_the_defaults() -> None:
    azure.check_config("gpu", config())
    settings = parse_config("gpu", config())

    assert settings.worker_port == 8443
    assert settings.use_private_ip is False
    assert settings.worker_requirement == ""
    assert settings.allow_from == ("203.0.113.7/32",)
    assert settings.base_url is None


def test_every_key_is_accepted() -> None:
    full = config(
        fallback_vm_sizes=["Standard_D4s_v5"],
        use_private_ip=True,
        worker_port=9443,
        worker_requirement="labbatch==0.1.0",
        image="Debian:debian-12:12-gen2:latest",
        base_url="https://management.example.net",
        allow_from=["2001:db8::/32", "10.8.0.0/16"],
        storage={"api_version": "2025-11-05"},
    )
    assert set(full) == azure.CONFIG_KEYS

    azure.check_config("gpu", full)


@pytest.mark.parametrize(
    ("changes", "key", "says"),
    [
        ({"subscription_id": None}, "subscription_id", "has no"),
        ({"resource_group": 3}, "resource_group", "non-empty string"),
        ({"subnet_id": None}, "subnet_id", "existing subnet"),
        ({"subnet_id": "workers"}, "subnet_id", "subnet's ARM id"),
        ({"allow_from": None}, "allow_from", "ifconfig.me"),
        ({"allow_from": []}, "allow_from", "ifconfig.me"),
        ({"allow_from": "203.0.113.7"}, "allow_from", "list of addresses"),
        ({"allow_from": ["my-laptop"]}, "allow_from", "no IP address or CIDR"),
        ({"use_private_ip": "yes"}, "use_private_ip", "true or false"),
        ({"worker_port": 0}, "worker_port", "TCP port"),
        ({"worker_port": True}, "worker_port", "TCP port"),
        ({"worker_requirement": ["labbatch"]}, "worker_requirement", "string"),
        ({"fallback_vm_sizes": "Standard_D4s_v5"}, "fallback_vm_sizes", "list of VM sizes"),
        ({"ssh_public_key": None}, "ssh_public_key", "SSH key"),
        ({"image": "debian"}, "image", "publisher:offer:sku:version"),
        ({"base_url": "http://management.example.net"}, "base_url", "never travel"),
        ({"base_url": "ftp://127.0.0.1"}, "base_url", "https://"),
    ],
)
def test_bad_config_names_the_pool_and_the_key(
    changes: dict[str, Any], key: str, says: str
) -> None:
    with pytest.raises(CloudError) as caught:
        azure.check_config("gpu", config(**changes))

    message = str(caught.value)
    assert "'gpu'" in message
    assert key in message
    assert says in message


def test_unknown_keys_are_listed_with_the_accepted_ones() -> None:
    with pytest.raises(CloudError) as caught:
        azure.check_config("gpu", config(nic_id="n1", worker_host="10.0.0.4"))

    message = str(caught.value)
    assert "'nic_id', 'worker_host'" in message
    assert all(key in message for key in azure.CONFIG_KEYS)


def test_a_pool_name_unfit_for_an_nsg_name_is_refused() -> None:
    with pytest.raises(CloudError, match="network security group"):
        azure.check_config("gpu pool/1", config())


def test_make_cloud_reads_the_pool_config_lazily() -> None:
    asked: list[str] = []

    def pool_config(pool: str) -> dict[str, Any]:
        asked.append(pool)
        return config()

    cloud = azure.make_cloud(pool_config)

    assert cloud.kind == "azure"
    assert asked == []


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:8080"]
)
def test_plain_http_to_loopback_gets_the_dummy_credential(base_url: str) -> None:
    azure.check_config("gpu", config(base_url=base_url))
    credential, policies = loopback_auth(base_url)

    assert isinstance(credential, StaticCredential)
    assert [type(p) for p in policies] == [AllowHttp]


@pytest.mark.parametrize("base_url", [None, "https://management.azure.com"])
def test_https_uses_default_azure_credential(base_url: str | None) -> None:
    assert loopback_auth(base_url) == (None, [])  # None: the client makes DefaultAzureCredential
