"""The engine end to end on SQLite and PostgreSQL, with real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.batches import frontend
from app.engine.workers.connection import DialError, WorkerConnection
from app.errors import UserError
from app.models.spec import load_dag_file, parse_dag_text
from tests.engine_helpers import USER, engine, kill_worker_running, until

EXAMPLES = Path(__file__).parent.parent / "examples"


async def test_examples_end_as_their_comments_say(db_url: str) -> None:
    async with engine(db_url) as eng:
        ids = {}
        for name in ("diamond", "per-sample", "failure"):
            spec = load_dag_file(EXAMPLES / f"{name}.yaml")
            ids[name] = await frontend.submit_batch(eng.db, spec, user=USER)
        eng.runtime.notify_changed()
        assert (await eng.wait(ids["diamond"])).state == "success"
        assert (await eng.wait(ids["per-sample"])).state == "success"
        failure = await eng.wait(ids["failure"])
        assert failure.state == "failure"
        jobs = await eng.jobs(ids["failure"])
        assert {n: j.state for n, j in jobs.items()} == {
            "flaky": "Failed",
            "after-flaky": "Cancelled",
            "report": "Success",
            "independent": "Success",
        }
        assert jobs["flaky"].exit_code == 3
        never_started = await frontend.job_detail(eng.db, ids["failure"], "after-flaky")
        assert never_started.attempts == []
        assert "about to fail" in await frontend.job_log(eng.db, ids["failure"], "flaky")
        merged = await frontend.job_log(eng.db, ids["diamond"], "merge")
        assert merged.split() == ["REFERENCE", "ecnerefer"]


async def test_cancel_after_n_failures_cancels_the_rest(db_url: str) -> None:
    async with engine(db_url, cores=1) as eng:
        batch_id = await eng.submit(
            """
            version: 1
            name: fail-fast
            cancel_after_n_failures: 2
            defaults: {cpu: 0.25}
            jobs:
              - {name: bad1, command: exit 1}
              - {name: bad2, command: exit 2}
              - {name: slow, command: sleep 30}
              - {name: later, command: "true", depends_on: [slow]}
              - {name: tidy, command: "true", depends_on: [later], always_run: true}
            """
        )
        batch = await eng.wait(batch_id, timeout_s=20)
        jobs = await eng.jobs(batch_id)
        assert batch.state == "failure"
        assert batch.cancelled
        assert jobs["bad1"].state == jobs["bad2"].state == "Failed"
        assert jobs["slow"].state == "Cancelled"
        assert jobs["later"].state == "Cancelled"
        assert jobs["tidy"].state == "Success"  # always_run still runs after a cancel


async def test_cancel_kills_running_jobs_and_keeps_always_run(db_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "cleanup-ran"
    async with engine(db_url, cores=1) as eng:
        batch_id = await eng.submit(
            f"""
            version: 1
            name: to-cancel
            defaults: {{cpu: 0.25}}
            jobs:
              - {{name: long, command: "sleep 60 & sleep 60; wait"}}
              - {{name: queued, command: "true", depends_on: [long]}}
              - {{name: cleanup, command: "touch {marker}", depends_on: [queued],
                  always_run: true}}
            """
        )

        async def long_running() -> bool:
            return await eng.job_state(batch_id, "long") == "Running"

        await until(long_running, what="the long job to run")
        cancelled = await frontend.cancel_batch(eng.db, batch_id, user=USER)
        assert cancelled.cancelled
        assert await eng.job_state(batch_id, "queued") == "Cancelled"  # at once
        batch = await eng.wait(batch_id, timeout_s=15)
        jobs = await eng.jobs(batch_id)
        assert batch.state == "cancelled"
        assert jobs["long"].state == "Cancelled"
        assert jobs["cleanup"].state == "Success"
        assert marker.exists()


async def test_cancel_is_refused_for_another_users_batch(db_url: str) -> None:
    async with engine(db_url, start=False) as eng:
        batch_id = await eng.submit("version: 1\njobs: [{name: a, command: 'true'}]\n")
        with pytest.raises(UserError, match="belongs to tester"):
            await frontend.cancel_batch(eng.db, batch_id, user="mallory")


async def test_timeout_ends_error_and_kills_the_job(db_url: str) -> None:
    async with engine(db_url) as eng:
        batch_id = await eng.submit(
            """
            version: 1
            name: slowpoke
            jobs:
              - {name: slow, command: "sleep 30", timeout: 1, cpu: 0.25}
            """
        )
        batch = await eng.wait(batch_id, timeout_s=15)
        job = (await eng.jobs(batch_id))["slow"]
        assert batch.state == "failure"
        assert job.state == "Error"
        assert "timed out" in (job.error or "")


async def test_worker_killed_mid_job_reruns_on_another_worker(db_url: str, tmp_path: Path) -> None:
    count = tmp_path / "starts"
    async with engine(db_url, n_workers=2, cores=1) as eng:

        async def two_workers() -> bool:
            return sum(i.healthy for i in eng.runtime.driver.instances.values()) == 2

        await until(two_workers, what="two healthy workers")
        batch_id = await eng.submit(
            f"""
            version: 1
            name: survivor
            jobs:
              - name: victim
                cpu: 1
                command: |
                  echo start >> {count}
                  if [ "$LABBATCH_ATTEMPT_ID" = 1 ]; then sleep 60; fi
            """
        )

        async def running() -> bool:
            return await eng.job_state(batch_id, "victim") == "Running"

        await until(running, what="the victim to run")
        first = await kill_worker_running(eng, batch_id, "victim")
        batch = await eng.wait(batch_id, timeout_s=20)
        detail = await frontend.job_detail(eng.db, batch_id, "victim")
        assert batch.state == "success"
        assert [a.attempt for a in detail.attempts] == [1, 2]
        assert detail.attempts[0].instance_name == first
        assert detail.attempts[1].instance_name != first
        assert "exited" in (detail.attempts[0].end_reason or "")
        assert detail.attempts[1].end_reason == "completed"


async def test_job_bigger_than_any_worker_ends_error(db_url: str) -> None:
    async with engine(db_url, cores=1) as eng:
        batch_id = await eng.submit("version: 1\njobs: [{name: huge, command: 'true', cpu: 8}]\n")
        await eng.wait(batch_id)
        job = (await eng.jobs(batch_id))["huge"]
        assert job.state == "Error"
        assert "needs 8 cores but the largest worker" in (job.error or "")


async def test_update_appends_jobs_that_depend_on_old_ones(db_url: str) -> None:
    async with engine(db_url) as eng:
        batch_id = await eng.submit(
            "version: 1\nname: grows\njobs: [{name: first, command: 'echo one'}]\n"
        )
        await eng.wait(batch_id)
        names = await frontend.existing_job_names(eng.db, batch_id)
        spec = parse_dag_text(
            "version: 1\nname: grows\njobs:\n"
            "  - {name: second, command: 'echo two', depends_on: [first]}\n"
            "  - {name: third, command: 'echo three', depends_on: [second]}\n",
            source="<update>",
            existing_jobs=names,
        )
        await frontend.append_update(eng.db, batch_id, spec, user=USER)
        eng.runtime.notify_changed()
        batch = await eng.wait(batch_id)
        assert batch.state == "success"
        assert batch.n_jobs == 3
        assert [j.job_id for j in (await eng.jobs(batch_id)).values()] == [1, 2, 3]


async def test_worker_refuses_a_wrong_token(db_url: str) -> None:
    async with engine(db_url) as eng:

        async def healthy() -> bool:
            return any(i.healthy for i in eng.runtime.driver.instances.values())

        await until(healthy, what="a healthy worker")
        inst = next(iter(eng.runtime.driver.instances.values()))
        assert inst.address is not None
        with pytest.raises(DialError, match="401"):
            await WorkerConnection.dial(inst.name, inst.address, "not-the-token")


async def test_attempts_run_out_when_workers_keep_dying(db_url: str) -> None:
    async with engine(db_url, n_workers=1, cores=1) as eng:
        batch_id = await eng.submit(
            "version: 1\njobs: [{name: doomed, command: 'sleep 60', n_max_attempts: 1}]\n"
        )

        async def running() -> bool:
            return await eng.job_state(batch_id, "doomed") == "Running"

        await until(running, what="the job to run")
        await kill_worker_running(eng, batch_id, "doomed")
        await eng.wait(batch_id)
        job = (await eng.jobs(batch_id))["doomed"]
        assert job.state == "Error"
        assert "gave up after 1 attempts" in (job.error or "")
