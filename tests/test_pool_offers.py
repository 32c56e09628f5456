"""`labbatch pool offers NAME` as a user runs it, against the fake GCE and Azure servers.

The fakes serve on the test's event loop, so the command runs as an asyncio subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.clouds.fake_azure import FakeAzure, serve
from tests.clouds.fake_gce import FakeGce, serving

pytestmark = pytest.mark.timeout(90)
SUBNET = (
    "/subscriptions/sub-1/resourceGroups/rg-lab/providers/Microsoft.Network/"
    "virtualNetworks/vnet-lab/subnets/workers"
)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


async def labbatch(db: str, *args: str) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", *args, "--db", db,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=os.environ.copy(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def ok(db: str, *args: str) -> str:
    result = await labbatch(db, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'pools.db'}"


@pytest.fixture
async def gce_url() -> AsyncIterator[str]:
    async with serving(FakeGce()) as url:
        yield url


@pytest.fixture
async def azure_url() -> AsyncIterator[str]:
    async with serve(FakeAzure()) as url:
        yield url


async def create_gce_pool(db: str, endpoint: str, machine_type: str = "c3-standard-8") -> None:
    await ok(
        db, "pool", "create", "gce", "--cloud", "gcp", "--project", "lab-project",
        "--zones", "us-central1-a,us-central1-b", "--machine-type", machine_type,
        "--worker-cores", "8", "--allow-from", "203.0.113.7", "--api-endpoint", endpoint,
    )  # fmt: skip


async def create_azure_pool(db: str, base_url: str) -> None:
    await ok(
        db, "pool", "create", "az", "--cloud", "azure", "--subscription", "sub-1",
        "--resource-group", "rg-lab", "--location", "westeurope", "--vm-size",
        "Standard_D4s_v5", "--subnet-id", SUBNET, "--ssh-public-key", "ssh-ed25519 AAAA t",
        "--allow-from", "203.0.113.7", "--base-url", base_url,
    )  # fmt: skip


async def test_gce_pool_offers_the_union_of_its_zones_with_its_type_marked(
    db: str, gce_url: str
) -> None:
    await create_gce_pool(db, gce_url)

    text = await ok(db, "pool", "offers", "gce")

    lines = text.splitlines()
    assert lines[0] == "gce (gcp): 8 machine types offered in us-central1-a, us-central1-b"
    assert " * c3-standard-8    " in text  # only us-central1-a has it; still offered
    assert any(line.split() == ["n2-highmem-8", "8", "64", "GB"] for line in lines)
    assert lines[-1] == " * the pool's machine type (c3-standard-8)"
    listed = json.loads(await ok(db, "pool", "offers", "gce", "--json"))
    assert {"name": "n2-standard-4", "cores": 4, "memory_mb": 16384, "current": False} in listed
    assert [t["name"] for t in listed if t["current"]] == ["c3-standard-8"]
    assert [t["cores"] for t in listed] == sorted(t["cores"] for t in listed)


async def test_gce_pool_whose_type_no_zone_offers_says_so(db: str, gce_url: str) -> None:
    await create_gce_pool(db, gce_url, machine_type="n2-standard-6")

    text = await ok(db, "pool", "offers", "gce")

    assert "*" not in text
    assert text.splitlines()[-1] == "the pool's machine type n2-standard-6 is not offered there"


async def test_azure_pool_offers_its_location_sizes(db: str, azure_url: str) -> None:
    await create_azure_pool(db, azure_url)

    text = await ok(db, "pool", "offers", "az")

    assert text.startswith("az (azure): 13 VM sizes offered in westeurope\n")
    assert " * Standard_D4s_v5 " in text
    listed = json.loads(await ok(db, "pool", "offers", "az", "--json"))
    assert {"name": "Standard_E4s_v5", "cores": 4, "memory_mb": 32768, "current": False} in listed


async def test_a_local_pool_has_no_machine_types(db: str) -> None:
    await ok(db, "pool", "create", "cpu")

    result = await labbatch(db, "pool", "offers", "cpu")

    assert result.returncode == 0
    assert "local pools have no machine types" in result.stderr
    assert json.loads(await ok(db, "pool", "offers", "cpu", "--json")) == []


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
async def test_an_unreachable_api_is_a_one_line_error(db: str, cloud: str) -> None:
    unreachable = "http://127.0.0.1:9"  # the discard port: nothing listens there
    if cloud == "gcp":
        await create_gce_pool(db, unreachable)
        name, needle = "gce", "the API is unreachable"
    else:
        await create_azure_pool(db, unreachable)
        name, needle = "az", "Could not reach Azure"

    result = await labbatch(db, "pool", "offers", name)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("labbatch: ") and needle in result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


async def test_an_unknown_pool_is_a_clear_error(db: str) -> None:
    result = await labbatch(db, "pool", "offers", "nope")

    assert result.returncode != 0
    assert "there is no pool 'nope'" in result.stderr and "Traceback" not in result.stderr


async def test_refused_credentials_are_a_one_line_error(db: str) -> None:
    async with serving(FakeGce(unauthorized=True)) as endpoint:
        await create_gce_pool(db, endpoint)
        result = await labbatch(db, "pool", "offers", "gce")

    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "gcloud auth application-default login" in result.stderr
