"""GceCloud (the CloudDriver of Compute Engine) with the real SDK against a fake GCE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials

from app.clouds.base import InstanceRequest
from app.clouds.gcp import GceCloud, GceResources
from app.errors import CloudError
from tests.clouds.fake_gce import FakeGce, serving

pytestmark = pytest.mark.timeout(30)
PROJECT = "lab-project"
ZONE_A, ZONE_B = "us-central1-a", "us-central1-b"
POLL_S = 0.02


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
    """Stored pool configs by name; tests may change them."""
    base = {
        "project": PROJECT,
        "zones": [ZONE_A, ZONE_B],
        "api_endpoint": fake[1],
        "allow_from": ["203.0.113.7"],
    }
    return {
        "gpu": {**base, "machine_type": "n2-standard-8", "boot_disk_gb": 50},
        "other": {**base, "machine_type": "e2-standard-4"},
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
    def make() -> GceCloud:
        return GceCloud(
            pools.__getitem__,
            resources_factory=fake_resources,
            poll_interval_s=POLL_S,
        )

    return make


@pytest.fixture
async def cloud(make_cloud: Callable[[], GceCloud]) -> AsyncIterator[GceCloud]:
    driver = make_cloud()
    yield driver
    await driver.close()


def request(name: str = "lb-gpu-1", *, pool: str = "gpu", spot: bool = True) -> InstanceRequest:
    return InstanceRequest(
        name=name, pool=pool, cores_mcpu=8000, token="s3cret-token", preemptible=spot
    )


async def eventually(check: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def zone_of(body: dict[str, Any]) -> str:
    return str(body["machineType"]).split("/")[1]


async def test_create_sends_secrets_tags_labels_spot_and_startup_script(
    gce: FakeGce, cloud: GceCloud
) -> None:
    created = await cloud.create_instance(request())

    assert created.name == "lb-gpu-1"
    assert created.location == ZONE_A
    assert created.address == "127.0.0.1:8443"  # the fake's external IP, the default port
    assert created.handle["zone"] == ZONE_A and created.handle["pool"] == "gpu"
    assert created.handle["port"] == 8443
    [body] = gce.insert_bodies
    assert body["tags"] == {"items": ["labbatch-worker"]}
    assert body["machineType"] == f"zones/{ZONE_A}/machineTypes/n2-standard-8"
    assert body["disks"][0]["initializeParams"]["diskSizeGb"] == "50"
    assert body["scheduling"]["provisioningModel"] == "SPOT"
    assert body["labels"] == {
        "labbatch": "true",
        "labbatch-pool": "gpu",
        "labbatch-instance": "lb-gpu-1",
    }
    metadata = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert sorted(metadata) == [
        "labbatch-tls-cert",
        "labbatch-tls-key",
        "labbatch-token",
        "startup-script",
    ]
    assert metadata["labbatch-token"] == "s3cret-token"
    assert metadata["labbatch-tls-cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in metadata["labbatch-tls-key"]
    script = metadata["startup-script"]
    assert "s3cret-token" not in script and "PRIVATE KEY" not in script  # secrets: metadata only
    assert "--port 8443" in script and "--name lb-gpu-1" in script and "--cores 8" in script
    syntax = await asyncio.create_subprocess_exec(
        "sh", "-n", stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, errors = await syntax.communicate(script.encode())
    assert syntax.returncode == 0, errors.decode()  # the script parses


async def test_request_machine_type_wins_and_standard_vm_is_not_spot(
    gce: FakeGce, cloud: GceCloud
) -> None:
    req = InstanceRequest(
        name="lb-std", pool="gpu", cores_mcpu=2000, token="t", machine_type="n2-standard-2"
    )
    await cloud.create_instance(req)
    [body] = gce.insert_bodies
    assert body["machineType"].endswith("/n2-standard-2")
    assert "scheduling" not in body


async def test_quota_error_falls_back_to_the_next_zone(gce: FakeGce, cloud: GceCloud) -> None:
    gce.fail_next_insert("QUOTA_EXCEEDED", "Quota 'CPUS' exceeded.  Limit: 24.0")

    created = await cloud.create_instance(request())

    assert created.location == ZONE_B and created.handle["zone"] == ZONE_B
    assert [zone_of(b) for b in gce.insert_bodies] == [ZONE_A, ZONE_B]
    assert [(z, n) for (_, z, n) in gce.instances] == [(ZONE_B, "lb-gpu-1")]


async def test_all_zones_failing_is_one_transient_error_naming_each_zone(
    gce: FakeGce, cloud: GceCloud
) -> None:
    gce.fail_zone(ZONE_A, "QUOTA_EXCEEDED", "Quota 'CPUS' exceeded.", http_status=403)
    gce.fail_zone(ZONE_B)  # out of capacity

    with pytest.raises(CloudError) as caught:
        await cloud.create_instance(request())

    assert caught.value.transient
    message = str(caught.value)
    assert "gpu" in message and "lb-gpu-1" in message
    assert f"{ZONE_A}:" in message and "CPUS" in message
    assert f"{ZONE_B}:" in message and "ZONE_RESOURCE_POOL_EXHAUSTED" in message
    assert gce.instances == {}


async def test_permanent_error_stops_at_the_first_zone(gce: FakeGce, cloud: GceCloud) -> None:
    gce.unauthorized = True
    with pytest.raises(CloudError) as caught:
        await cloud.create_instance(request())
    assert not caught.value.transient
    assert "gcloud auth application-default login" in str(caught.value)
    assert not any(ZONE_B in path for _, path in gce.requests)


async def test_unknown_pool_is_a_clear_error(cloud: GceCloud) -> None:
    with pytest.raises(CloudError, match="pool nope"):
        await cloud.create_instance(request(pool="nope"))


async def test_adopt_finds_running_vms_only(
    gce: FakeGce, cloud: GceCloud, make_cloud: Callable[[], GceCloud]
) -> None:
    created = await cloud.create_instance(request("lb-a"))
    stopped = await cloud.create_instance(request("lb-b"))
    gce.preempt("lb-b", ZONE_A, delete=False)

    successor = make_cloud()
    try:
        assert await successor.adopt_instance("lb-a", created.handle)
        assert not await successor.adopt_instance("lb-b", stopped.handle)
        assert not await successor.adopt_instance("lb-gone", {"pool": "gpu", "zone": ZONE_A})
        assert not await successor.adopt_instance("lb-a", {})
        await successor.delete_instance("lb-a")  # adopted: the successor may delete it
        assert await cloud.adopt_instance("lb-a", created.handle) is False
    finally:
        await successor.close()


async def test_delete_is_idempotent(gce: FakeGce, cloud: GceCloud) -> None:
    await cloud.create_instance(request())
    await cloud.delete_instance("lb-gpu-1")
    assert gce.instances == {}
    await cloud.delete_instance("lb-gpu-1")
    await cloud.delete_instance("never-made")


@pytest.mark.parametrize("vm_deleted", [True, False])
async def test_preempted_spot_vm_is_reported_once(
    gce: FakeGce, cloud: GceCloud, vm_deleted: bool
) -> None:
    lost: list[tuple[str, str]] = []
    cloud.on_lost(lambda name, reason: lost.append((name, reason)))
    await cloud.create_instance(request("lb-a"))
    await cloud.create_instance(request("lb-b"))

    gce.preempt("lb-a", ZONE_A, delete=vm_deleted)
    await eventually(lambda: bool(lost))
    await asyncio.sleep(5 * POLL_S)  # more polls: still one report

    assert lost == [("lb-a", "preempted")]


async def test_a_vm_we_delete_is_not_reported(gce: FakeGce, cloud: GceCloud) -> None:
    lost: list[tuple[str, str]] = []
    cloud.on_lost(lambda name, reason: lost.append((name, reason)))
    await cloud.create_instance(request("lb-a"))
    await cloud.create_instance(request("lb-b"))

    await cloud.delete_instance("lb-a")
    gce.preempt("lb-b", ZONE_A)
    await eventually(lambda: bool(lost))
    await asyncio.sleep(5 * POLL_S)

    assert lost == [("lb-b", "preempted")]


async def test_standard_vm_deleted_elsewhere_is_reported_as_gone(
    gce: FakeGce, cloud: GceCloud
) -> None:
    lost: list[tuple[str, str]] = []
    cloud.on_lost(lambda name, reason: lost.append((name, reason)))
    await cloud.create_instance(request("lb-std", spot=False))
    gce.preempt("lb-std", ZONE_A)
    await eventually(lambda: bool(lost))
    assert lost == [("lb-std", "VM deleted outside LabBatch")]


async def test_orphans_are_listed_and_deleted_per_pool(
    gce: FakeGce, make_cloud: Callable[[], GceCloud]
) -> None:
    crashed = make_cloud()
    await crashed.create_instance(request("lb-known"))
    await crashed.create_instance(request("lb-orphan"))
    gce.fail_next_insert()
    await crashed.create_instance(request("lb-orphan-b"))  # lands in zone B
    await crashed.create_instance(request("lb-other", pool="other"))
    gce.instances[(PROJECT, ZONE_A, "theirs")] = {
        "kind": "compute#instance", "name": "theirs", "status": "RUNNING",
        "zone": f"zones/{ZONE_A}", "labels": {"team": "x"},
    }  # fmt: skip

    restarted = make_cloud()
    try:
        known = {"lb-known"}
        assert await restarted.orphans("gpu", known) == ["lb-orphan", "lb-orphan-b"]
        assert await restarted.delete_orphans("gpu", known) == ["lb-orphan", "lb-orphan-b"]
        assert sorted(n for (_, _, n) in gce.instances) == ["lb-known", "lb-other", "theirs"]
        assert await restarted.orphans("gpu", known) == []
    finally:
        await restarted.close()
        await crashed.close()


async def test_close_deletes_owned_vms_and_stops_watching(
    gce: FakeGce, make_cloud: Callable[[], GceCloud]
) -> None:
    lost: list[tuple[str, str]] = []
    driver = make_cloud()
    driver.on_lost(lambda name, reason: lost.append((name, reason)))
    await driver.create_instance(request("lb-a"))
    await driver.create_instance(request("lb-b", spot=False))

    await driver.close()

    assert gce.instances == {}
    await asyncio.sleep(3 * POLL_S)
    assert lost == []


@pytest.mark.parametrize("status", [400, 404])
async def test_a_zone_without_the_machine_type_falls_back_to_one_with_it(
    gce: FakeGce, cloud: GceCloud, pools: dict[str, dict[str, Any]], status: int
) -> None:
    gce.unknown_machine_type_status = status  # the API says it either way
    pools["gpu"].update(zones=[ZONE_B, ZONE_A], machine_type="c3-standard-8")  # B lacks it

    created = await cloud.create_instance(request())

    assert created.location == ZONE_A
    assert [zone_of(b) for b in gce.insert_bodies] == [ZONE_B, ZONE_A]
    assert [(z, n) for (_, z, n) in gce.instances] == [(ZONE_A, "lb-gpu-1")]


@pytest.mark.parametrize("status", [400, 404])
async def test_a_machine_type_no_zone_offers_is_a_lasting_error_naming_similar_types(
    gce: FakeGce, cloud: GceCloud, pools: dict[str, dict[str, Any]], status: int
) -> None:
    gce.unknown_machine_type_status = status
    pools["gpu"]["machine_type"] = "n2-standard-6"

    with pytest.raises(CloudError) as caught:
        await cloud.create_instance(request())

    assert not caught.value.transient
    assert str(caught.value) == (
        f"pool gpu: machine type n2-standard-6 is not offered in zones {ZONE_A}, {ZONE_B}; "
        "similar types there: n2-standard-2, n2-standard-4, n2-standard-8, n2-highmem-8, "
        "c3-standard-8, e2-standard-4 (`labbatch pool offers gpu` lists them)"
    )
    assert gce.instances == {}
    # each zone's machine types were listed once, and are remembered for the next create
    with pytest.raises(CloudError):
        await cloud.create_instance(request("lb-gpu-2"))
    listed = [path for _, path in gce.requests if path.endswith("/machineTypes")]
    assert sorted(listed) == sorted(
        f"/compute/v1/projects/{PROJECT}/zones/{zone}/machineTypes" for zone in (ZONE_A, ZONE_B)
    )


async def test_a_missing_machine_type_and_a_full_zone_stay_transient(
    gce: FakeGce, cloud: GceCloud, pools: dict[str, dict[str, Any]]
) -> None:
    pools["gpu"].update(zones=[ZONE_A, ZONE_B], machine_type="c3-standard-8")
    gce.fail_zone(ZONE_A)  # has the type but no capacity; B lacks the type

    with pytest.raises(CloudError) as caught:
        await cloud.create_instance(request())

    assert caught.value.transient
    message = str(caught.value)
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in message
    assert f"zone {ZONE_B} does not offer machine type c3-standard-8" in message
