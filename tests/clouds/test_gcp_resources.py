"""GceResources with the real google-cloud-compute client against a fake GCE on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials

from app.clouds.gcp import DEFAULT_IMAGE, GceResources, MachineType, VmSpec
from app.clouds.gcp.errors import translate
from app.errors import CloudError
from tests.clouds.fake_gce import FakeGce
from tests.http_helpers import serve_app

pytestmark = pytest.mark.timeout(30)
PROJECT = "lab-project"
ZONE = "us-central1-a"


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeGce, str]]:
    """The fake API served on the test's loop; yields it and its http endpoint."""
    gce = FakeGce()
    async with serve_app(gce.app()) as endpoint:
        yield gce, endpoint


@pytest.fixture
def gce(fake: tuple[FakeGce, str]) -> FakeGce:
    return fake[0]


@pytest.fixture
def resources(fake: tuple[FakeGce, str]) -> GceResources:
    return GceResources(
        PROJECT, api_endpoint=fake[1], credentials=AnonymousCredentials(), poll_interval_s=0
    )


def spot_spec(name: str = "lb-pool-1", zone: str = ZONE) -> VmSpec:
    return VmSpec(
        name=name,
        zone=zone,
        machine_type="n2-standard-8",
        boot_disk_gb=50,
        spot=True,
        labels={"pool": "gpu", "instance": name},
        metadata={"labbatch-token": "s3cret", "startup-script": "#!/bin/sh\necho hi\n"},
        network_tags=("labbatch-worker",),
    )


async def test_create_sends_the_documented_body_and_waits_for_the_operation(
    gce: FakeGce, resources: GceResources
) -> None:
    info = await resources.create_vm(spot_spec())

    assert (info.name, info.zone, info.status) == ("lb-pool-1", ZONE, "RUNNING")
    assert info.internal_ip and info.internal_ip.startswith("10.128.0.")
    assert info.external_ip == "127.0.0.1"
    assert info.labels == {"labbatch": "true", "pool": "gpu", "instance": "lb-pool-1"}
    assert gce.operation_polls() == [2]  # PENDING → RUNNING → DONE, polled by our client
    [body] = gce.insert_bodies
    assert body["name"] == "lb-pool-1"
    assert body["machineType"] == f"zones/{ZONE}/machineTypes/n2-standard-8"
    [disk] = body["disks"]
    assert disk["boot"] and disk["autoDelete"]
    assert disk["initializeParams"] == {"sourceImage": DEFAULT_IMAGE, "diskSizeGb": "50"}
    [nic] = body["networkInterfaces"]
    assert nic["accessConfigs"][0]["type"] == "ONE_TO_ONE_NAT"
    assert body["scheduling"] == {
        "provisioningModel": "SPOT",
        "instanceTerminationAction": "DELETE",
        "automaticRestart": False,
        "onHostMaintenance": "TERMINATE",
    }
    assert body["labels"] == {"labbatch": "true", "pool": "gpu", "instance": "lb-pool-1"}
    assert body["tags"] == {"items": ["labbatch-worker"]}
    assert {i["key"]: i["value"] for i in body["metadata"]["items"]} == {
        "labbatch-token": "s3cret",
        "startup-script": "#!/bin/sh\necho hi\n",
    }
    assert any(
        p.startswith(f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances")
        for _, p in gce.requests
    )


async def test_standard_vm_has_no_spot_scheduling(gce: FakeGce, resources: GceResources) -> None:
    spec = VmSpec(
        name="lb-std",
        zone=ZONE,
        machine_type="e2-standard-4",
        subnetwork="regions/us-central1/subnetworks/lab",
    )
    await resources.create_vm(spec)
    [body] = gce.insert_bodies
    assert "scheduling" not in body and "tags" not in body
    assert body["networkInterfaces"][0]["subnetwork"] == "regions/us-central1/subnetworks/lab"


async def test_get_and_delete_are_idempotent(gce: FakeGce, resources: GceResources) -> None:
    await resources.create_vm(spot_spec())
    assert (await resources.get_vm("lb-pool-1", ZONE)) is not None
    await resources.delete_vm("lb-pool-1", ZONE)
    assert gce.operation_polls()[-1] == 2  # the delete operation was polled to DONE
    assert await resources.get_vm("lb-pool-1", ZONE) is None
    await resources.delete_vm("lb-pool-1", ZONE)  # already gone: no error
    assert await resources.get_vm("never-existed", "europe-west1-b") is None


async def test_list_finds_only_labbatch_vms_in_the_given_zones(
    gce: FakeGce, resources: GceResources
) -> None:
    await resources.create_vm(spot_spec("lb-a", ZONE))
    await resources.create_vm(spot_spec("lb-b", "europe-west1-b"))
    # A VM someone else made in the same project, without the labbatch label.
    gce.instances[(PROJECT, ZONE, "theirs")] = {
        "kind": "compute#instance", "name": "theirs", "status": "RUNNING",
        "zone": f"zones/{ZONE}", "labels": {"team": "other"},
    }  # fmt: skip

    found = await resources.list_labbatch_vms([ZONE, "europe-west1-b", "asia-east1-a"])

    assert sorted((v.name, v.zone) for v in found) == [("lb-a", ZONE), ("lb-b", "europe-west1-b")]
    assert any("filter=" in p for _, p in gce.requests)


async def test_quota_error_is_transient_and_names_zone_and_quota(
    gce: FakeGce, resources: GceResources
) -> None:
    gce.fail_next_insert(
        "QUOTA_EXCEEDED", "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1."
    )

    with pytest.raises(CloudError) as caught:
        await resources.create_vm(spot_spec())

    assert caught.value.transient
    message = str(caught.value)
    assert ZONE in message and "CPUS" in message and "quota" in message.lower()
    assert await resources.get_vm("lb-pool-1", ZONE) is None
    assert (await resources.create_vm(spot_spec())).status == "RUNNING"  # next try succeeds


async def test_zone_out_of_capacity_is_transient(gce: FakeGce, resources: GceResources) -> None:
    gce.fail_next_insert(
        "ZONE_RESOURCE_POOL_EXHAUSTED", "The zone does not have enough resources.", http_status=503
    )
    with pytest.raises(CloudError) as caught:
        await resources.create_vm(spot_spec())
    assert caught.value.transient
    assert "another zone" in str(caught.value)


async def test_auth_error_is_permanent_and_says_how_to_log_in(
    gce: FakeGce, resources: GceResources
) -> None:
    gce.unauthorized = True
    for call in (
        lambda: resources.create_vm(spot_spec()),
        lambda: resources.get_vm("lb-pool-1", ZONE),
        lambda: resources.list_labbatch_vms([ZONE]),
    ):
        with pytest.raises(CloudError) as caught:
            await call()
        assert not caught.value.transient
        assert "gcloud auth application-default login" in str(caught.value)


async def test_preempted_vm_is_gone_or_terminated(gce: FakeGce, resources: GceResources) -> None:
    await resources.create_vm(spot_spec("lb-a"))
    await resources.create_vm(spot_spec("lb-b"))

    gce.preempt("lb-a", ZONE)  # termination action DELETE: the VM disappears
    gce.preempt("lb-b", ZONE, delete=False)  # STOP: it stays, TERMINATED

    assert await resources.get_vm("lb-a", ZONE) is None
    stopped = await resources.get_vm("lb-b", ZONE)
    assert stopped is not None and stopped.status == "TERMINATED"


async def test_machine_types_with_cores_and_memory_asked_once_per_zone(
    gce: FakeGce, resources: GceResources
) -> None:
    types = await resources.machine_types(ZONE)

    assert [m.name for m in types] == sorted(m.name for m in types)
    assert MachineType("n2-standard-8", 8, 32768) in types
    assert "c3-standard-8" in [m.name for m in types]
    assert "c3-standard-8" not in [m.name for m in await resources.machine_types("us-central1-b")]
    await resources.machine_types(ZONE)
    listed = [path for method, path in gce.requests if path.endswith("/machineTypes")]
    assert len(listed) == 2  # one per zone: the second ask of ZONE was answered from memory


@pytest.mark.parametrize(
    ("exc", "transient", "needle"),
    [
        (gexc.TooManyRequests("slow down"), True, "retry"),
        (gexc.ServiceUnavailable("backend error"), True, "retry"),
        (gexc.InternalServerError("oops"), True, "retry"),
        (gexc.Forbidden("Quota exceeded", errors=[{"reason": "quotaExceeded"}]), True, "quota"),
        (gexc.Unauthorized("no creds"), False, "gcloud auth application-default login"),
        (gexc.Forbidden("permission denied"), False, "gcloud auth application-default login"),
        (gexc.NotFound("machine type n9-huge"), False, "machine type"),
        (gexc.BadRequest("Invalid value for field 'resource.machineType'"), False, "invalid"),
        (ConnectionRefusedError("refused"), True, "unreachable"),
    ],
)
def test_translate_decides_what_is_transient(
    exc: BaseException, transient: bool, needle: str
) -> None:
    error = translate(exc, doing="create VM x", zone=ZONE)
    assert error.transient is transient
    assert needle in str(error)
