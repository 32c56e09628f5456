"""The read-only commands' direct SQLite reads agree with the frontend's SQLAlchemy reads."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import update

from app.engine.batches import frontend, reads
from app.engine.batches.database_reads import DatabaseReads
from app.engine.batches.reads import SqliteReads, open_reads
from app.errors import NotFoundError, UserError
from app.models.db import open_database
from app.models.tables import Attempt, JobState
from tests.test_cli import labbatch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run_examples(db_url: str) -> None:
    # failure.yaml: a failed job, a cancelled one, an always_run one; diamond.yaml: attributes
    for name, code in (("failure.yaml", 1), ("diamond.yaml", 0)):
        done = labbatch("run", str(EXAMPLES / name), "--db", db_url, timeout=90)
        assert done.returncode == code, done.stderr


async def _both(db_url: str) -> None:
    db = await open_database(db_url)
    try:
        await db.run(  # transfer figures on one attempt, as a job with files leaves them
            lambda conn: conn.execute(
                update(Attempt)
                .where(Attempt.batch_id == 2, Attempt.job_id == 1)
                .values(staging={"in_bytes": 5.0, "in_s": 0.5, "linked_bytes": 5.0})
            )
        )
        async with open_reads(db_url) as direct:
            assert isinstance(direct, SqliteReads)
            full = DatabaseReads(db)
            for user in (None, "tester", "nobody"):
                assert await direct.list_batches(user=user, limit=10) == (
                    await full.list_batches(user=user, limit=10)
                )
            for batch_id in (1, 2):
                assert await direct.get_batch(batch_id) == await full.get_batch(batch_id)
                assert await direct.attempt_staging(batch_id) == (
                    await full.attempt_staging(batch_id)
                )
                for state in (None, "success", "CANCELLED", "failed"):
                    assert await direct.list_jobs(batch_id, state=state) == (
                        await full.list_jobs(batch_id, state=state)
                    )
                for job in await full.list_jobs(batch_id):
                    for ref in (job.job_id, str(job.job_id), job.name, f"name:{job.name}"):
                        assert await direct.find_job(batch_id, ref) == (
                            await full.find_job(batch_id, ref)
                        )
                    for attempt in (None, 1, 2):
                        assert await direct.job_log(batch_id, job.job_id, attempt=attempt) == (
                            await full.job_log(batch_id, job.job_id, attempt=attempt)
                        )
            assert (await direct.attempt_staging(2))[1]["linked_bytes"] == 5.0
            assert (await direct.get_batch(2)).attributes == {"purpose": "example"}
            assert await direct.job_log(1, 4, attempt=None) == "fine\n"
            with pytest.raises(NotFoundError, match="no batch 9"):
                await direct.get_batch(9)
            with pytest.raises(NotFoundError, match="no job 'nope'"):
                await direct.find_job(1, "nope")
            with pytest.raises(UserError, match="unknown job state"):
                await direct.list_jobs(1, state="bogus")
    finally:
        await db.close()


@pytest.mark.timeout(240)
def test_sqlite_reads_agree_with_the_frontend(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'reads.db'}"
    _run_examples(db_url)
    asyncio.run(_both(db_url))


@pytest.mark.timeout(60)
def test_a_database_not_at_the_newest_revision_is_opened_in_full(tmp_path: Path) -> None:
    async def kinds(url: str) -> type:
        async with open_reads(url) as found:
            return type(found)

    path = tmp_path / "fresh.db"
    url = f"sqlite:///{path}"
    assert asyncio.run(kinds(url)) is DatabaseReads  # not there yet: created and migrated
    assert asyncio.run(kinds(url)) is SqliteReads  # at the newest revision now
    assert asyncio.run(kinds(str(path))) is SqliteReads  # a plain path names it too

    older = tmp_path / "older.db"
    shutil.copy(path, older)
    with sqlite3.connect(older) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'an-older-one'")
    assert reads._direct_connection(f"sqlite:///{older}") is None  # the full path migrates


def test_the_copies_of_the_frontends_columns_and_states_agree() -> None:
    assert tuple(c.key for c in frontend.BATCH_COLUMNS) == reads.BATCH_FIELDS
    assert tuple(c.key for c in frontend.JOB_INFO_COLUMNS) == reads.JOB_FIELDS
    assert tuple(s.value for s in JobState) == reads.JOB_STATES
    assert reads.JOB_NAME_PREFIX == frontend.JOB_NAME_PREFIX


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_on_postgresql_the_commands_read_through_the_frontend(pg_url: str) -> None:
    dag = EXAMPLES / "diamond.yaml"
    done = labbatch("run", str(dag), "--db", pg_url, timeout=90)
    assert done.returncode == 0, done.stderr

    async def read() -> None:
        async with open_reads(pg_url) as found:
            assert isinstance(found, DatabaseReads)
            batch = await found.get_batch(1)
            assert (batch.name, batch.attributes) == ("diamond", {"purpose": "example"})
            assert [j.state for j in await found.list_jobs(1)] == ["Success"] * 4

    asyncio.run(read())
    shown = labbatch("status", "1", "--db", pg_url)
    assert shown.returncode == 0 and "success" in shown.stdout, shown.stderr
