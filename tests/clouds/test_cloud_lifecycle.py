"""Cloud pools against fakes that behave like clouds: VMs that boot for seconds (and refuse
connections meanwhile), that never boot, deletes that fail with 503, a driver restarted in
the middle. The real engine, the real SDKs, real workers started by the start-up scripts."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.cli.main import main as labbatch_main
from app.engine.workers import pools
from app.models.tables import Instance
from tests.clouds.fake_azure import FakeAzure, serve
from tests.clouds.fake_gce import FakeGce, serving
from tests.clouds.pool_helpers import azure_pool, gce_pool, quick_watch
from tests.engine_helpers import Engine, engine, until
from tests.test_cli import labbatch

pytestmark = pytest.mark.timeout(120)


async def instance_rows(eng: Engine, pool: str) -> list[Any]:
    async with eng.db.connect() as conn:
        rows = await conn.execute(
            select(Instance).where(Instance.pool == pool).order_by(Instance.time_created)
        )
        return list(rows)


async def pool_show(db_url: str, pool: str, capsys: pytest.CaptureFixture[str]) -> str:
    """`labbatch pool show`, run in a thread (the engine keeps running) of this process (a
    new process may take seconds to start on a busy machine)."""
    capsys.readouterr()
    code = await asyncio.to_thread(labbatch_main, ["pool", "show", pool, "--db", db_url])
    shown = capsys.readouterr()
    assert code == 0, shown.err
    return shown.out


async def test_vms_that_boot_for_seconds_are_dialled_until_they_answer(tmp_path: Path) -> None:
    gce = FakeGce(boot_dir=tmp_path / "vms", boot_delay_s=(3.0, 8.0))
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with serving(gce) as endpoint, engine(db_url) as eng:
        pool = replace(gce_pool(endpoint), max_instances=2, max_live_instances=2)
        await pools.create_pool(eng.db, pool)
        batch_id = await eng.submit(
            """
            version: 1
            jobs:
              - {name: a, pool: gce, cpu: 2, command: 'sleep 1; echo a'}
              - {name: b, pool: gce, cpu: 2, command: 'sleep 1; echo b'}
            """
        )

        async def booting() -> bool:
            return any(
                i.shown_state == "booting" for i in await pools.pool_instances(eng.db, "gce")
            )

        await until(booting, timeout_s=30, what="a VM to show as booting")
        info = await eng.wait(batch_id, timeout_s=90)
        assert info.state == "success", await eng.jobs(batch_id)

        async def all_answered() -> bool:  # the batch may be done before the second boots
            return all(row.time_activated for row in await instance_rows(eng, "gce"))

        await until(all_answered, timeout_s=30, what="every VM to answer")
        rows = await instance_rows(eng, "gce")
        assert len(rows) == 2, "the autoscaler asked for one VM per job, no more"
        assert len(gce.insert_bodies) == len(rows), "a retried insert made a second VM"
        for row in rows:
            assert row.time_activated is not None, f"{row.name} was never dialled up"
            assert not (row.reason or "").startswith(pools.START_FAILURE), row.reason


async def test_a_delete_that_fails_is_retried_until_the_vm_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gce = FakeGce(boot_dir=tmp_path / "vms")
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with serving(gce) as endpoint, engine(db_url) as eng:
        await pools.create_pool(eng.db, replace(gce_pool(endpoint), idle_timeout_s=1.0))
        batch_id = await eng.submit(
            "version: 1\njobs:\n  - {name: j, pool: gce, command: 'true'}\n"
        )
        assert (await eng.wait(batch_id, timeout_s=60)).state == "success"
        [row] = await instance_rows(eng, "gce")
        gce.refused_deletes.add(row.name)  # Compute Engine answers 503 to its DELETEs

        async def refused_twice() -> bool:
            return gce.delete_requests.count(row.name) >= 2

        await until(refused_twice, timeout_s=30, what="the idle VM's DELETE to be refused twice")
        shown = await pool_show(db_url, "gce", capsys)
        assert row.name in shown and "deleting" in shown, shown
        assert "not deleted yet (idle for" in shown and "unavailable" in shown, shown
        assert any(key[2] == row.name for key in gce.instances), "the VM went anyway"

        gce.refused_deletes.clear()

        async def gone() -> bool:
            [now] = await instance_rows(eng, "gce")
            return now.state == "deleted" and not any(k[2] == row.name for k in gce.instances)

        await until(gone, timeout_s=30, what="the VM to be deleted on a later try")
        assert row.name not in await pool_show(db_url, "gce", capsys)


async def test_a_delete_that_failed_is_finished_by_the_next_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gce = FakeGce(boot_dir=tmp_path / "vms")
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with serving(gce) as endpoint:
        async with engine(db_url) as first:
            await pools.create_pool(first.db, replace(gce_pool(endpoint), idle_timeout_s=1.0))
            batch_id = await first.submit(
                "version: 1\njobs:\n  - {name: j, pool: gce, command: 'true'}\n"
            )
            assert (await first.wait(batch_id, timeout_s=60)).state == "success"
            [row] = await instance_rows(first, "gce")
            gce.refused_deletes.add(row.name)

            async def refused() -> bool:
                return gce.delete_requests.count(row.name) >= 1

            await until(refused, timeout_s=30, what="the idle VM's DELETE to be refused")
            await first.runtime.driver.hand_over()  # the desktop closes, the VM not deleted
        tries_before = gce.delete_requests.count(row.name)

        async with engine(db_url) as second:  # `labbatch serve` takes the lease

            async def retried() -> bool:
                return gce.delete_requests.count(row.name) > tries_before

            await until(retried, timeout_s=30, what="the next driver to delete the VM again")
            shown = await pool_show(db_url, "gce", capsys)
            assert row.name in shown and "deleting" in shown, shown
            gce.refused_deletes.clear()

            async def gone() -> bool:
                [now] = await instance_rows(second, "gce")
                return now.state == "deleted" and not any(k[2] == row.name for k in gce.instances)

            await until(gone, timeout_s=30, what="the next driver to finish the delete")


async def test_a_vm_that_never_boots_is_deleted_at_its_deadline(tmp_path: Path) -> None:
    gce = FakeGce(boot_dir=tmp_path / "vms", never_boot_next=1)
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with serving(gce) as endpoint, engine(db_url) as eng:
        await pools.create_pool(eng.db, replace(gce_pool(endpoint), boot_deadline_s=6.0))
        batch_id = await eng.submit(
            "version: 1\njobs:\n  - {name: j, pool: gce, command: 'true'}\n"
        )

        async def has_address() -> bool:
            rows = await instance_rows(eng, "gce")
            return bool(rows) and rows[0].address is not None

        await until(has_address, timeout_s=30, what="the first VM to be made")
        [stuck] = await instance_rows(eng, "gce")

        assert (await eng.wait(batch_id, timeout_s=60)).state == "success"
        first, *later = await instance_rows(eng, "gce")
        assert first.name == stuck.name and first.state == "deleted"
        assert "did not answer within the pool's boot deadline of 6s" in first.reason
        assert "SeaBIOS" in first.reason, "the serial console's last lines are missing"
        assert not any(key[2] == first.name for key in gce.instances)
        assert later and later[0].time_created >= first.time_deactivated + 0.8, "no backoff"
        assert first.time_deactivated - first.time_created >= 6.0, "deleted before its deadline"

    shown = labbatch("pool", "show", "gce", "--db", db_url)
    assert shown.returncode == 0, shown.stderr
    # a worker started since: the failure is history, not a current problem
    assert "last failure to start a worker" not in shown.stdout


async def test_a_pool_whose_vms_never_boot_says_why_in_pool_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gce = FakeGce(boot_dir=tmp_path / "vms", never_boot_next=100)
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with serving(gce) as endpoint, engine(db_url) as eng:
        await pools.create_pool(eng.db, replace(gce_pool(endpoint), boot_deadline_s=3.0))
        await eng.submit("version: 1\njobs:\n  - {name: j, pool: gce, command: 'true'}\n")

        async def failed() -> bool:
            return await pools.last_start_failure(eng.db, "gce") is not None

        await until(failed, timeout_s=30, what="the VM to miss its deadline")
        shown = await pool_show(db_url, "gce", capsys)
        assert "last failure to start a worker" in shown and "boot deadline of 3s" in shown
        assert "--boot-deadline" in shown and "| SeaBIOS" in shown, shown


async def test_an_azure_vm_that_never_boots_is_replaced_with_its_boot_log(
    tmp_path: Path,
) -> None:
    state = FakeAzure(vm_root=tmp_path / "vms", never_boot_next=1)
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with serve(state) as base_url, engine(db_url) as eng:
        await pools.create_pool(eng.db, azure_pool(base_url, boot_deadline_s=5.0))
        batch_id = await eng.submit(
            "version: 1\njobs:\n  - {name: hi, pool: az, command: 'echo hello from azure'}\n"
        )
        assert (await eng.wait(batch_id, timeout_s=60)).state == "success"
        first, second = await instance_rows(eng, "az")
        assert first.state == "deleted" and "boot deadline of 5s" in first.reason
        assert "Hyper-V UEFI firmware" in first.reason, "the boot diagnostics are missing"
        assert ("rg-lab", first.name) not in state.vms
        assert second.time_activated is not None


async def test_a_standard_vm_the_cloud_stopped_is_deleted_and_its_job_runs_again(
    tmp_path: Path,
) -> None:
    gce = FakeGce(boot_dir=tmp_path / "vms")
    async with serving(gce) as endpoint, engine(f"sqlite:///{tmp_path}/lb.db") as eng:
        await pools.create_pool(eng.db, gce_pool(endpoint))  # standard VMs
        quick_watch(eng, "gcp")
        batch_id = await eng.submit(
            """
            version: 1
            jobs:
              - name: long
                pool: gce
                command: |
                  if [ "$LABBATCH_ATTEMPT_ID" -gt 1 ]; then exit 0; fi
                  sleep 60
            """
        )

        async def running() -> bool:
            return await eng.job_state(batch_id, "long") == "Running"

        await until(running, timeout_s=60, what="the job to run")
        [row] = await instance_rows(eng, "gce")
        gce.preempt(row.name, "us-central1-a", delete=False)  # TERMINATED: its disk bills on

        async def deleted() -> bool:
            return not any(key[2] == row.name for key in gce.instances)

        await until(deleted, timeout_s=30, what="the stopped VM to be deleted")
        assert (await eng.wait(batch_id, timeout_s=60)).state == "success"


async def test_a_vm_a_stopping_driver_could_not_delete_is_deleted_by_the_next(
    tmp_path: Path,
) -> None:
    gce = FakeGce(boot_dir=tmp_path / "vms")
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with serving(gce) as endpoint:
        async with engine(db_url) as first:
            await pools.create_pool(first.db, gce_pool(endpoint))
            batch_id = await first.submit(
                "version: 1\njobs:\n  - {name: j, pool: gce, command: 'true'}\n"
            )
            assert (await first.wait(batch_id, timeout_s=60)).state == "success"
            [row] = await instance_rows(first, "gce")
            gce.refused_deletes.add(row.name)
        # the driver stopped (the desktop quit) while Compute Engine refused the delete
        assert any(key[2] == row.name for key in gce.instances)
        async with engine(db_url, start=False) as between:
            [stuck] = await instance_rows(between, "gce")
            assert stuck.state == "deleting" and "unavailable" in stuck.delete_error
        gce.refused_deletes.clear()
        async with engine(db_url) as second:

            async def gone() -> bool:
                [now] = await instance_rows(second, "gce")
                return now.state == "deleted" and not any(k[2] == row.name for k in gce.instances)

            await until(gone, timeout_s=30, what="the next driver to delete the VM")


async def test_a_vm_the_cloud_stops_while_it_boots_is_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gce = FakeGce(boot_dir=tmp_path / "vms", never_boot_next=1)
    db_url = f"sqlite:///{tmp_path}/lb.db"
    async with serving(gce) as endpoint, engine(db_url) as eng:
        await pools.create_pool(eng.db, gce_pool(endpoint))  # the deadline is 10 minutes
        quick_watch(eng, "gcp")
        batch_id = await eng.submit(
            "version: 1\njobs:\n  - {name: j, pool: gce, command: 'true'}\n"
        )

        async def has_address() -> bool:
            rows = await instance_rows(eng, "gce")
            return bool(rows) and rows[0].address is not None

        await until(has_address, timeout_s=30, what="the first VM to be made")
        [stuck] = await instance_rows(eng, "gce")
        shown = await pool_show(db_url, "gce", capsys)
        assert f"{stuck.name}         booting" in shown, shown
        gce.preempt(stuck.name, "us-central1-a", delete=False)  # a standard VM: TERMINATED

        assert (await eng.wait(batch_id, timeout_s=60)).state == "success"
        first, *_later = await instance_rows(eng, "gce")
        assert first.state == "deleted" and first.time_activated is None
        assert f"VM {stuck.name} failed while booting: VM TERMINATED" in first.reason
        assert not any(key[2] == first.name for key in gce.instances)
