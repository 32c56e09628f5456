"""The pool's firewall rule and the TLS pin, with the real SDK against the fake GCE."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.auth.credentials import AnonymousCredentials

from app.clouds.base import InstanceRequest
from app.clouds.gcp import GceCloud, GceResources
from app.clouds.gcp.firewall import rule_name
from app.errors import CloudError
from tests.clouds.fake_gce import FakeGce, serving

pytestmark = pytest.mark.timeout(30)
PROJECT = "lab-project"
ZONE = "us-central1-a"
RULE = "labbatch-gpu-worker"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeGce, str]]:
    gce = FakeGce()
    async with serving(gce) as endpoint:
        yield gce, endpoint


@pytest.fixture
def gce(fake: tuple[FakeGce, str]) -> FakeGce:
    return fake[0]


@pytest.fixture
def pools(fake: tuple[FakeGce, str]) -> dict[str, dict[str, Any]]:
    return {
        "gpu": {
            "project": PROJECT,
            "zones": [ZONE],
            "machine_type": "n2-standard-8",
            "api_endpoint": fake[1],
            "allow_from": ["203.0.113.7"],
        }
    }


def fake_resources(config: Mapping[str, Any]) -> GceResources:
    return GceResources(
        config["project"],
        api_endpoint=config["api_endpoint"],
        credentials=AnonymousCredentials(),
        poll_interval_s=0,
    )


@pytest.fixture
def make_cloud(pools: dict[str, dict[str, Any]]) -> Callable[[], GceCloud]:
    return lambda: GceCloud(pools.__getitem__, resources_factory=fake_resources)


@pytest.fixture
async def cloud(make_cloud: Callable[[], GceCloud]) -> AsyncIterator[GceCloud]:
    driver = make_cloud()
    yield driver
    await driver.close()


def request(name: str = "lb-gpu-1") -> InstanceRequest:
    return InstanceRequest(name=name, pool="gpu", cores_mcpu=4000, token="s3cret")


def firewall_gets(gce: FakeGce) -> int:
    return sum(1 for m, p in gce.requests if m == "GET" and "/global/firewalls/" in p)


async def test_the_rule_is_created_once_with_the_right_body(gce: FakeGce, cloud: GceCloud) -> None:
    await asyncio.gather(*(cloud.create_instance(request(f"lb-{i}")) for i in range(3)))
    await cloud.create_instance(request("lb-later"))

    assert firewall_gets(gce) == 1  # checked once per pool per process
    [(method, body)] = gce.firewall_writes
    assert method == "POST"
    assert body["name"] == RULE
    assert body["network"] == "global/networks/default"
    assert body["direction"] == "INGRESS"
    assert body["allowed"] == [{"IPProtocol": "tcp", "ports": ["8443"]}]
    assert body["sourceRanges"] == ["203.0.113.7/32"]
    assert body["targetTags"] == ["labbatch-worker"]
    assert gce.operation_polls()[0] == 2  # the global operation was polled to DONE
    assert f"/compute/v1/projects/{PROJECT}/global/operations/" in str(gce.requests)


async def test_a_matching_rule_is_left_alone(
    gce: FakeGce, cloud: GceCloud, make_cloud: Callable[[], GceCloud]
) -> None:
    await cloud.create_instance(request("lb-a"))
    restarted = make_cloud()
    try:
        await restarted.create_instance(request("lb-b"))
    finally:
        await restarted.close()
    assert [m for m, _ in gce.firewall_writes] == ["POST"]
    assert firewall_gets(gce) == 2


@pytest.mark.parametrize(
    ("change", "patched"),
    [
        ({"allow_from": ["198.51.100.0/24", "203.0.113.7"]}, "sourceRanges"),
        ({"worker_port": 9443}, "allowed"),
        ({"network_tag": "lab-workers"}, "targetTags"),
    ],
)
async def test_a_changed_pool_config_patches_the_rule(
    gce: FakeGce,
    cloud: GceCloud,
    pools: dict[str, dict[str, Any]],
    change: dict[str, Any],
    patched: str,
) -> None:
    await cloud.create_instance(request("lb-a"))
    pools["gpu"] = {**pools["gpu"], **change}
    created = await cloud.create_instance(request("lb-b"))

    assert [m for m, _ in gce.firewall_writes] == ["POST", "PATCH"]
    rule = gce.firewalls[(PROJECT, RULE)]
    _, patch = gce.firewall_writes[1]
    assert rule[patched] == patch[patched]
    port = change.get("worker_port", 8443)
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": [str(port)]}]
    # the fake gives each VM a loopback address of its own: the second is 127.0.0.2
    assert created.address == f"127.0.0.2:{port}" and created.handle["port"] == port
    assert sorted(rule["sourceRanges"]) == sorted(
        f"{a}/32" if "/" not in a else a for a in pools["gpu"]["allow_from"]
    )
    assert gce.insert_bodies[-1]["tags"] == {"items": rule["targetTags"]}


async def test_no_permission_to_create_the_rule_says_which_and_how_by_hand(
    gce: FakeGce, cloud: GceCloud
) -> None:
    gce.forbidden_firewall_methods = {"POST", "PATCH"}
    with pytest.raises(CloudError) as caught:
        await cloud.create_instance(request())

    assert not caught.value.transient
    message = str(caught.value)
    assert "compute.firewalls.create" in message and "Compute Security Admin" in message
    assert (
        f"gcloud compute firewall-rules create {RULE} --project={PROJECT} --network=default "
        "--direction=INGRESS --action=allow --rules=tcp:8443 --source-ranges=203.0.113.7/32 "
        "--target-tags=labbatch-worker"
    ) in message
    assert gce.insert_bodies == []  # no VM that nobody could reach


async def test_a_rule_made_by_hand_without_read_permission_is_assumed(
    gce: FakeGce, cloud: GceCloud, caplog: pytest.LogCaptureFixture
) -> None:
    gce.forbidden_firewall_methods = {"GET", "POST", "PATCH"}
    with caplog.at_level(logging.WARNING, "labbatch.clouds.gcp"):
        await cloud.create_instance(request())
    assert RULE in caplog.text and "by hand" in caplog.text
    assert gce.firewall_writes == []


async def test_handle_pins_the_certificate_sent_in_metadata(
    gce: FakeGce, cloud: GceCloud, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        created = await cloud.create_instance(request("lb-a"))
        other = await cloud.create_instance(request("lb-b"))

    metadata = {i["key"]: i["value"] for i in gce.insert_bodies[0]["metadata"]["items"]}
    cert = x509.load_pem_x509_certificate(metadata["labbatch-tls-cert"].encode())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert created.handle["tls_sha256"] == hashlib.sha256(der).hexdigest()
    assert other.handle["tls_sha256"] != created.handle["tls_sha256"]  # one identity per VM
    assert "s3cret" not in caplog.text and "PRIVATE KEY" not in caplog.text
    assert "s3cret" not in repr(created) and "PRIVATE KEY" not in repr(created)


async def test_use_internal_ip_dials_the_internal_address(
    gce: FakeGce, cloud: GceCloud, pools: dict[str, dict[str, Any]]
) -> None:
    pools["gpu"]["use_internal_ip"] = True
    created = await cloud.create_instance(request())
    [vm] = gce.instances.values()
    assert created.address == f"{vm['networkInterfaces'][0]['networkIP']}:8443"
    assert created.address.startswith("10.128.0.")


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        ("gpu", "labbatch-gpu-worker"),
        ("big-mem2", "labbatch-big-mem2-worker"),
    ],
)
def test_rule_names_are_the_pool_when_it_is_valid(pool: str, expected: str) -> None:
    assert rule_name(pool) == expected


@pytest.mark.parametrize(
    ("pool", "sibling"),
    [("GPU", "gpu"), ("gpu_a", "gpu-a"), ("x" * 80, "x" * 79 + "y"), ("a b", "a-b")],
)
def test_rule_names_are_valid_and_distinct_when_the_pool_is_not(pool: str, sibling: str) -> None:
    name = rule_name(pool)
    assert len(name) <= 63 and name.startswith("labbatch-") and name.endswith("-worker")
    assert all(c.islower() or c.isdigit() or c == "-" for c in name)
    assert name != rule_name(sibling)


def existing_rule(network: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": RULE,
        "network": f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/global/networks/"
        + network,
        "direction": "INGRESS",
        "allowed": [{"IPProtocol": "tcp", "ports": ["8443"]}],
        "sourceRanges": ["203.0.113.7/32"],
        "targetTags": ["labbatch-worker"],
        "selfLink": f"projects/{PROJECT}/global/firewalls/{RULE}",
        **fields,
    }


async def test_a_disabled_rule_is_enabled(gce: FakeGce, cloud: GceCloud) -> None:
    gce.firewalls[(PROJECT, RULE)] = existing_rule("default", disabled=True)
    await cloud.create_instance(request())
    [(method, body)] = gce.firewall_writes
    assert method == "PATCH" and body["disabled"] is False


async def test_a_rule_on_another_network_is_a_clear_error(gce: FakeGce, cloud: GceCloud) -> None:
    gce.firewalls[(PROJECT, RULE)] = existing_rule("old-vpc")
    with pytest.raises(CloudError) as caught:
        await cloud.create_instance(request())
    assert "old-vpc" in str(caught.value)
    assert f"gcloud compute firewall-rules delete {RULE}" in str(caught.value)
    assert gce.firewall_writes == [] and gce.insert_bodies == []
