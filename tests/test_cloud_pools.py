"""Cloud pools end to end: the real engine creates VMs through the real SDKs on fake GCE and
Azure servers; each fake VM runs the start-up script, whose worker the driver dials over TLS."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.engine.batches import frontend
from app.engine.scheduler.why import explain
from app.engine.workers import pools
from app.models.tables import AttemptResource, Instance
from tests.clouds.fake_azure import FakeAzure, serve
from tests.clouds.fake_gce import FakeGce
from tests.clouds.pool_helpers import azure_pool, fake_gce, gce_pool, quick_watch
from tests.engine_helpers import Engine, engine, until
from tests.test_cli import labbatch

pytestmark = pytest.mark.timeout(90)


async def instance_row(eng: Engine, name: str) -> Any:
    async with eng.db.connect() as conn:
        return (await conn.execute(select(Instance).where(Instance.name == name))).one()


async def billed_resources(eng: Engine, batch_id: int) -> dict[int, set[str]]:
    """Attempt number -> the resources it is billed for."""
    async with eng.db.connect() as conn:
        rows = await conn.execute(
            select(AttemptResource.attempt, AttemptResource.resource).where(
                AttemptResource.batch_id == batch_id
            )
        )
        billed: dict[int, set[str]] = {}
        for attempt, resource in rows:
            billed.setdefault(attempt, set()).add(resource)
        return billed


async def test_a_job_runs_on_a_gce_vm_booted_by_its_startup_script(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with fake_gce(tmp_path) as (gce, endpoint), engine(f"sqlite:///{tmp_path}/lb.db") as eng:
        created = await pools.create_pool(eng.db, gce_pool(endpoint))
        assert created.regions == ("us-central1",)  # what billing and jobs' regions use
        batch_id = await eng.submit(
            """
            version: 1
            jobs:
              - name: hello
                pool: gce
                regions: [us-central1]
                command: echo "hello from $(hostname) on a cloud worker"
              - name: elsewhere
                pool: gce
                regions: [europe-west1]
                command: "true"
            """
        )
        await eng.wait(batch_id, timeout_s=60)
        jobs = await eng.jobs(batch_id)
        assert jobs["hello"].state == "Success", jobs
        assert jobs["elsewhere"].state == "Error"
        assert "no zone of pool gce is in regions [europe-west1]" in str(jobs["elsewhere"].error)
        job = jobs["hello"]
        log = await frontend.job_log(eng.db, batch_id, job.job_id)
        assert "on a cloud worker" in log

        row = await instance_row(eng, str(job.instance_name))
        assert row.location == "us-central1-a"
        assert row.address.startswith("127.0.0.1:")
        assert len(row.handle["tls_sha256"]) == 64  # the pin, not the key
        assert "PRIVATE KEY" not in str(row.handle)
        body = next(iter(gce.instances.values()))
        keys = {item["key"] for item in body["metadata"]["items"]}
        assert {"startup-script", "labbatch-token", "labbatch-tls-key"} <= keys
        assert gce.firewall_writes, "the pool's firewall rule was not ensured"
        token = next(i["value"] for i in body["metadata"]["items"] if i["key"] == "labbatch-token")
        assert token not in caplog.text

    assert not any(vm.running for vm in gce.vms.values()), "closing the driver left a VM running"


async def test_a_preempted_spot_vm_reruns_its_job_on_a_new_vm(tmp_path: Path) -> None:
    async with fake_gce(tmp_path) as (gce, endpoint), engine(f"sqlite:///{tmp_path}/lb.db") as eng:
        await pools.create_pool(eng.db, gce_pool(endpoint, spot=True))
        quick_watch(eng, "gcp")
        batch_id = await eng.submit(
            """
            version: 1
            jobs:
              - name: long
                pool: gce
                command: |
                  if [ "$LABBATCH_ATTEMPT_ID" -gt 1 ]; then echo second run; exit 0; fi
                  sleep 60
            """
        )

        async def running() -> bool:
            return await eng.job_state(batch_id, "long") == "Running"

        await until(running, timeout_s=60, what="the job to run on the first VM")
        first = str((await frontend.find_job(eng.db, batch_id, "long")).instance_name)
        gce.preempt(first, "us-central1-a")

        info = await eng.wait(batch_id, timeout_s=60)
        assert info.state == "success", await frontend.job_detail(eng.db, batch_id, "long")
        detail = await frontend.job_detail(eng.db, batch_id, "long")
        reasons = [a.end_reason for a in detail.attempts]
        assert reasons[0] is not None and reasons[0].startswith("preempted"), reasons
        assert detail.attempts[-1].instance_name != first
        assert (await instance_row(eng, first)).state == "deleted"


async def test_a_full_zone_falls_back_and_a_failing_pool_says_why_in_pool_show(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with fake_gce(tmp_path) as (gce, endpoint), engine(db_url) as eng:
        await pools.create_pool(eng.db, gce_pool(endpoint))
        gce.fail_zone("us-central1-a")  # out of capacity: the next zone takes the VM
        batch_id = await eng.submit(
            "version: 1\njobs:\n  - {name: one, pool: gce, command: 'true'}\n"
        )
        assert (await eng.wait(batch_id, timeout_s=60)).state == "success"
        job = (await eng.jobs(batch_id))["one"]
        assert (await instance_row(eng, str(job.instance_name))).location == "us-central1-b"

        gce.unauthorized = True  # credentials revoked: every zone fails the same way
        await pools.create_pool(eng.db, gce_pool(endpoint, name="gce2"))
        await pools.scale_pool(eng.db, "gce2", 1)
        eng.runtime.notify_changed()

        async def failed() -> bool:
            return await pools.last_start_failure(eng.db, "gce2") is not None

        await until(failed, timeout_s=30, what="the pool to report why it cannot start workers")
        waiting = await eng.submit(
            "version: 1\njobs:\n  - {name: w, pool: gce2, command: 'true'}\n"
        )
        why = await explain(eng.db, waiting, "w")
        assert "pool gce2 cannot start workers" in why and "gcloud auth" in why, why
        await asyncio.sleep(3)  # an observation window, not a wait for something to happen
        async with eng.db.connect() as conn:
            tries = (
                await conn.execute(select(func.count()).where(Instance.pool == "gce2"))
            ).scalar_one()
        assert tries <= 4, f"{tries} workers tried at once: the pool must back off (1, 2, 4 s…)"

    shown = labbatch("pool", "show", "gce2", "--db", db_url)
    assert shown.returncode == 0, shown.stderr
    assert "last failure to start a worker" in shown.stdout
    assert "gcloud auth application-default login" in shown.stdout
    assert "Traceback" not in shown.stdout + shown.stderr


async def test_a_new_driver_deletes_the_vms_no_driver_knows(tmp_path: Path) -> None:
    async with fake_gce(tmp_path) as (gce, endpoint):
        gce.instances[("lab-project", "us-central1-b", "gce-0rphan00")] = {
            "name": "gce-0rphan00",
            "zone": "projects/lab-project/zones/us-central1-b",
            "status": "RUNNING",
            "labels": {"labbatch": "true", "labbatch-pool": "gce"},
        }
        db_url = f"sqlite:///{tmp_path}/lb.db"
        async with engine(db_url, start=False) as eng:
            await pools.create_pool(eng.db, gce_pool(endpoint))
        async with engine(db_url) as eng:

            async def swept() -> bool:
                return not any(key[2] == "gce-0rphan00" for key in gce.instances)

            await until(swept, timeout_s=20, what="the orphaned VM to be deleted")


async def test_a_job_runs_on_an_azure_vm_booted_by_its_custom_data(tmp_path: Path) -> None:
    state = FakeAzure(vm_root=tmp_path / "vms")
    async with serve(state) as base_url, engine(f"sqlite:///{tmp_path}/lb.db") as eng:
        created = await pools.create_pool(eng.db, azure_pool(base_url))
        assert created.machine_type == "Standard_D4s_v5" and created.regions == ("westeurope",)
        batch_id = await eng.submit(
            "version: 1\njobs:\n  - {name: hi, pool: az, command: 'echo hello from azure'}\n"
        )
        info = await eng.wait(batch_id, timeout_s=60)
        assert info.state == "success", await eng.jobs(batch_id)
        job = (await eng.jobs(batch_id))["hi"]
        assert "hello from azure" in await frontend.job_log(eng.db, batch_id, job.job_id)
        row = await instance_row(eng, str(job.instance_name))
        assert row.location == "westeurope" and len(row.handle["tls_sha256"]) == 64
        body = state.put_bodies[-1]
        assert body["properties"]["hardwareProfile"]["vmSize"] == "Standard_D4s_v5"


def spot_of(gce: FakeGce, name: str) -> bool:
    body = next(b for b in gce.insert_bodies if b["name"] == name)
    return (body.get("scheduling") or {}).get("provisioningModel") == "SPOT"


async def test_after_its_preemptions_a_job_falls_back_to_a_standard_vm(tmp_path: Path) -> None:
    async with fake_gce(tmp_path) as (gce, endpoint), engine(f"sqlite:///{tmp_path}/lb.db") as eng:
        await pools.create_pool(eng.db, gce_pool(endpoint, spot=True))  # one VM at a time
        quick_watch(eng, "gcp")
        batch_id = await eng.submit(
            """
            version: 1
            jobs:
              - name: long
                pool: gce
                retry: {on: preemption, fallback_to_standard: 1}
                command: |
                  if [ "$LABBATCH_ATTEMPT_ID" -gt 1 ]; then exit 0; fi
                  sleep 60
            """
        )

        async def running() -> bool:
            return await eng.job_state(batch_id, "long") == "Running"

        await until(running, timeout_s=60, what="the job to run on a spot VM")
        first = str((await frontend.find_job(eng.db, batch_id, "long")).instance_name)
        assert spot_of(gce, first)
        gce.preempt(first, "us-central1-a")

        assert (await eng.wait(batch_id, timeout_s=60)).state == "success"
        second = str((await frontend.find_job(eng.db, batch_id, "long")).instance_name)
        assert second != first and not spot_of(gce, second), "no fallback to a standard VM"
        billed = await billed_resources(eng, batch_id)
        assert "compute/e2-spot/us-central1" in billed[1]
        assert "compute/e2-standard/us-central1" in billed[max(billed)]  # billed as it ran

        steady = await eng.submit(
            "version: 1\njobs:\n  - {name: s, pool: gce, preemptible: false, command: 'true'}\n"
        )
        assert (await eng.wait(steady, timeout_s=60)).state == "success"
        ran_on = str((await frontend.find_job(eng.db, steady, "s")).instance_name)
        assert not spot_of(gce, ran_on), "a job with preemptible: false ran on a spot VM"


async def test_a_driver_that_takes_over_adopts_the_vms_and_their_jobs(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with fake_gce(tmp_path) as (gce, endpoint):
        async with engine(db_url) as first:
            await pools.create_pool(first.db, gce_pool(endpoint))
            batch_id = await first.submit(
                """
                version: 1
                jobs:
                  - name: long
                    pool: gce
                    command: sleep 3; echo finished on the adopted VM
                """
            )

            async def running() -> bool:
                return await first.job_state(batch_id, "long") == "Running"

            await until(running, timeout_s=60, what="the job to run on the VM")
            vm = str((await frontend.find_job(first.db, batch_id, "long")).instance_name)
            await first.runtime.driver.hand_over()  # the desktop closes, keeping its pools

        async with engine(db_url) as second:  # `labbatch serve` takes the lease
            info = await second.wait(batch_id, timeout_s=60)
            detail = await frontend.job_detail(second.db, batch_id, "long")
            assert info.state == "success"
            assert [a.instance_name for a in detail.attempts] == [vm], "the job ran again"
            log = await frontend.job_log(second.db, batch_id, detail.job.job_id)
            assert "finished on the adopted VM" in log
            assert len(gce.insert_bodies) == 1  # no new VM: the same one, dialled with its pin
