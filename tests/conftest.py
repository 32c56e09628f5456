"""Shared fixtures: a private data dir per test, and a fresh database on SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from app.engine.secrets import forget_cached_key
from tests.worker_helpers import Driver, WorkerProcess, connect, start_worker

T = TypeVar("T")
PG_HOST = os.environ.get("LABBATCH_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("LABBATCH_TEST_PG_USER", "postgres")


@pytest.fixture(autouse=True)
def lb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data dir (database, worker files, secret key)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LABBATCH_HOME", str(home))
    monkeypatch.delenv("LABBATCH_DB", raising=False)
    monkeypatch.delenv("LABBATCH_SECRET_KEY", raising=False)
    monkeypatch.setenv("LABBATCH_USER", "tester")
    forget_cached_key()
    yield home
    forget_cached_key()


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[WorkerProcess]:
    """A real worker process on a free port (a module may override it, e.g. with another env)."""
    agent = await start_worker(tmp_path)
    yield agent
    await agent.stop()


@pytest.fixture
async def driver(worker: WorkerProcess) -> AsyncIterator[Driver]:
    """A driver connection to ``worker``."""
    client = await connect(worker)
    yield client
    await client.close()


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop (safe from sync fixtures)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _admin_execute(sql: str) -> None:
    try:
        conn = await asyncpg.connect(host=PG_HOST, user=PG_USER, database="postgres", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL at {PG_HOST}:5432 is not reachable ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        ) from exc
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    name = f"lb_test_{uuid.uuid4().hex[:12]}"
    run_in_thread(_admin_execute(f'CREATE DATABASE "{name}"'))
    yield f"postgresql://{PG_USER}@{PG_HOST}/{name}"
    run_in_thread(_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'labbatch.db'}"
    return request.getfixturevalue("pg_url")
