"""A fresh database is created in one step; it must equal one built by every migration."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection

from app.models import db as dbmod
from app.models.db import head_revision, open_database, run_migrations


def _schema(conn: Connection) -> dict[str, Any]:
    """Every table's columns, keys, indexes and constraints, in a comparable form."""
    insp = inspect(conn)
    schema: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        schema[table] = {
            # sorted: a migration appends a column where the model may declare it mid-table
            "columns": sorted(
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in insp.get_columns(table)
            ),
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"], str(fk.get("options")))
                for fk in insp.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            ),
            "uniques": sorted(
                (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)
            ),
            "checks": sorted(str(c["sqltext"]) for c in insp.get_check_constraints(table)),
            "partial": _partial_indexes(conn, table),
        }
    return schema


def _partial_indexes(conn: Connection, table: str) -> dict[str, str]:
    """Each partial index's WHERE clause, as the database states it."""
    if conn.dialect.name == "postgresql":
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"
    else:
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
    rows = conn.execute(text(query), {"t": table}).all()
    return {name: sql.split(" WHERE ", 1)[1] for name, sql in rows if sql and " WHERE " in sql}


async def _open_and_close(url: str) -> None:
    db = await open_database(url)
    await db.close()


def _drop_everything(conn: Connection) -> None:
    for table in reversed(dbmod.Base.metadata.sorted_tables):
        conn.execute(text(f'DROP TABLE "{table.name}"'))
    conn.execute(text("DROP TABLE alembic_version"))


def _version(conn: Connection) -> str:
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


async def test_a_fresh_create_equals_the_migrated_schema(db_url: str) -> None:
    await _open_and_close(db_url)  # fresh: one create and a stamp
    db = await open_database(db_url, migrate=False)
    try:
        async with db.engine.begin() as conn:
            created = await conn.run_sync(_schema)
            stamped = await conn.run_sync(_version)
            await conn.run_sync(_drop_everything)
        async with db.engine.begin() as conn:
            await conn.run_sync(run_migrations)  # every step, as an old database gets them
        async with db.engine.begin() as conn:
            migrated = await conn.run_sync(_schema)
    finally:
        await db.close()
    assert stamped == head_revision()
    assert created.keys() == migrated.keys()
    for table in created:
        assert created[table] == migrated[table], table
    # the scheduler's queues and the open attempts are partial indexes on either database
    assert set(created["jobs"]["partial"]) == {
        "ix_jobs_ready_queue",
        "ix_jobs_running",
        "ix_jobs_ready_always",
    }
    assert set(created["attempts"]["partial"]) == {"ix_attempts_open"}


async def test_an_older_database_is_upgraded_through_the_migrations(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    from alembic import command
    from alembic.config import Config

    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(dbmod.MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")  # a database from before cloud prices
    await _open_and_close(url)
    with engine.begin() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert version == head_revision()
    assert "cloud_prices" in tables


@pytest.mark.parametrize("opened", [1, 2])
async def test_opening_again_leaves_the_database_as_it_is(tmp_path, opened: int) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    for _ in range(opened):
        await _open_and_close(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        pools = conn.execute(text("SELECT name FROM pools ORDER BY name")).scalars().all()
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    assert pools == ["job-private", "local"]
    assert version == [head_revision()]
