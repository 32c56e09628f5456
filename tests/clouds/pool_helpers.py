"""Cloud pool makers the cloud tests share: a fake GCE server, a GCE or Azure pool, and a quicker
VM-state poll."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.clouds.registry import LazyCloud
from app.engine.workers.pools import PoolConfig
from tests.clouds.fake_gce import FakeGce, serving
from tests.clouds.fake_vm import free_port
from tests.engine_helpers import Engine

ALLOW = ["203.0.113.7/32"]


@asynccontextmanager
async def fake_gce(tmp_path: Path) -> AsyncIterator[tuple[FakeGce, str]]:
    gce = FakeGce(boot_dir=tmp_path / "vms")
    async with serving(gce) as endpoint:
        yield gce, endpoint


def gce_pool(endpoint: str, *, spot: bool = False, name: str = "gce") -> PoolConfig:
    return PoolConfig(
        name=name,
        cloud="gcp",
        machine_type="e2-standard-2",
        worker_cores_mcpu=2000,
        preemptible=spot,
        max_instances=1,
        max_live_instances=1,
        config={
            "project": "lab-project",
            "zones": ["us-central1-a", "us-central1-b"],
            "allow_from": ALLOW,
            "worker_port": free_port(),
            "api_endpoint": endpoint,
        },
    )


def quick_watch(eng: Engine, kind: str) -> None:
    """Poll the cloud's VM states every 0.2 s instead of every 15-30 s."""
    cloud = eng.runtime.driver.fleet.clouds[kind]
    assert isinstance(cloud, LazyCloud)
    cloud.cloud.poll_interval_s = 0.2  # type: ignore[attr-defined]


def azure_pool(
    base_url: str, *, extra_config: dict[str, Any] | None = None, **changes: Any
) -> PoolConfig:
    """An Azure pool whose ARM endpoint is ``base_url``; ``extra_config`` adds config keys (e.g.
    the storage endpoint), ``changes`` replace PoolConfig fields."""
    pool = PoolConfig(
        name="az",
        cloud="azure",
        worker_cores_mcpu=4000,
        max_instances=1,
        max_live_instances=1,
        config={
            "subscription_id": "sub-1",
            "resource_group": "rg-lab",
            "location": "westeurope",
            "vm_size": "Standard_D4s_v5",
            "subnet_id": (
                "/subscriptions/sub-1/resourceGroups/rg-lab/providers/"
                "Microsoft.Network/virtualNetworks/vnet-lab/subnets/workers"
            ),
            "allow_from": ALLOW,
            "ssh_public_key": "ssh-ed25519 AAAA lab",
            "worker_port": free_port(),
            "base_url": base_url,
            **(extra_config or {}),
        },
    )
    return replace(pool, **changes)
