"""Opening the database: URL resolution, async engine, SQLite pragmas, schema create/migrate."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union

from sqlalchemy import (
    Column,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import Connection, Dialect, Engine, Result, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

if TYPE_CHECKING:  # loaded only for PostgreSQL (asyncpg): SQLite needs no asyncio adapter
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.errors import ConfigError
from app.models.paths import data_dir, owner_only
from app.models.revisions import MIGRATIONS_DIR, head_revision
from app.models.tables import (
    Base,
    BillingProject,
    ChangeMarker,
    DriverLease,
    Pool,
    add_postgresql_where,
)

log = logging.getLogger("labbatch.db")
T = TypeVar("T")

DB_ENV = "LABBATCH_DB"
DEFAULT_BILLING_PROJECT = "default"
DEFAULT_POOL_NAME = "local"
JOB_PRIVATE_POOL = "job-private"  # jobs that name a machine_type: one worker each


def _create_private(path: Path) -> None:
    """Create an empty database file that only its owner may read (SQLite would use 0644)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.parent == data_dir():
            owner_only(path, 0o600)


def default_url() -> str:
    return f"sqlite:///{data_dir() / 'labbatch.db'}"


def resolve_url(url: str | None) -> str:
    """Turn a user's URL (or none) into an async SQLAlchemy URL.

    Accepts ``sqlite:///path.db``, a plain file path, and ``postgresql://user@host/db``.
    """
    raw = url or os.environ.get(DB_ENV) or default_url()
    if "://" not in raw:
        raw = f"sqlite:///{Path(raw).expanduser().resolve()}"
    try:
        parsed = make_url(raw)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {raw!r} is not a valid URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError(
                "an in-memory SQLite database cannot be shared with workers: name a file"
            )
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        _create_private(Path(parsed.database).expanduser())
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ConfigError(
        f"database URL {make_url(raw).render_as_string()!r}: use sqlite:///path.db or "
        "postgresql://user@host/db"
    )


def describe_url(url: str) -> str:
    """A URL fit for display: no password, no driver noise."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite {parsed.database}"
    return f"PostgreSQL {parsed.username or ''}@{parsed.host or 'localhost'}/{parsed.database}"


SQLITE_BEGIN = "labbatch_sqlite_begin"  # execution option: how a SQLite transaction begins


def _configure_sqlite(engine: Engine, *, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Take over transaction control so writers can BEGIN IMMEDIATE (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get(SQLITE_BEGIN, begin))


class ThreadConnection:
    """SQLite: the part of SQLAlchemy's AsyncConnection this project uses, over a plain
    sqlite3 connection whose calls run on reader threads. sqlalchemy.ext.asyncio (and its ORM)
    and aiosqlite, a sixth of a command's start-up, then stay unloaded."""

    def __init__(self, engine: Engine, executor: ThreadPoolExecutor) -> None:
        self._engine = engine
        self._executor = executor
        self._conn: Connection | None = None
        self._last: Future[Any] | None = None  # the newest call handed to a thread

    def _call(self, work: Callable[[], T]) -> asyncio.Future[T]:
        # One call at a time per connection, in order, even when a caller was cancelled
        # while its call still ran: the next one waits for it on its thread.
        before = self._last

        def in_order() -> T:
            if before is not None:
                wait([before])
            return work()

        self._last = future = self._executor.submit(in_order)
        return asyncio.wrap_future(future)

    @property
    def sync(self) -> Connection:
        assert self._conn is not None, "not connected"
        return self._conn

    async def open(self) -> ThreadConnection:
        opening = self._call(self._engine.connect)
        try:
            self._conn = await opening
        except asyncio.CancelledError:  # the thread may still open it: close it then
            assert self._last is not None
            self._last.add_done_callback(_close_opened)
            raise
        return self

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._call(conn.close)

    @property
    def dialect(self) -> Dialect:
        return self._engine.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Result[Any]:
        """Run a statement; its rows come back fetched (as AsyncConnection buffers them)."""
        conn = self.sync

        def work() -> Result[Any]:
            result = conn.execute(statement, parameters)
            return result.freeze()() if result.returns_rows else result

        return await self._call(work)

    async def run_sync(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        conn = self.sync
        return await self._call(lambda: work(conn, *args, **kwargs))

    async def execution_options(self, **options: Any) -> ThreadConnection:
        conn = self.sync
        await self._call(lambda: conn.execution_options(**options))
        return self

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[ThreadConnection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        conn = self.sync
        transaction = await self._call(conn.begin)
        try:
            yield self
        except BaseException:
            await self._call(transaction.rollback)
            raise
        await self._call(transaction.commit)


def _close_opened(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


class ThreadEngine:
    """SQLite: connect/begin/dispose as AsyncEngine offers them, on reader threads."""

    def __init__(self, engine: Engine) -> None:
        self.sync_engine = engine
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="labbatch-db-read")

    @property
    def dialect(self) -> Dialect:
        return self.sync_engine.dialect

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ThreadConnection]:
        conn = await ThreadConnection(self.sync_engine, self._executor).open()
        try:
            yield conn
        finally:
            await asyncio.shield(conn.close())

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[ThreadConnection]:
        async with self.connect() as conn, conn.begin():
            yield conn

    async def read(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` on a connection of its own, opened and closed on one thread."""

        def whole() -> T:
            with self.sync_engine.connect() as conn:
                return work(conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, whole)

    async def dispose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.sync_engine.dispose)
        self._executor.shutdown(wait=True)


AnyEngine = Union["AsyncEngine", ThreadEngine]
AnyConnection = Union["AsyncConnection", ThreadConnection]


@dataclass
class Database:
    """An open database: its engine and how to describe it.

    ``run`` executes a synchronous function in one transaction. On SQLite it runs on a
    private writer thread with the plain sqlite3 driver (one thread hop per transaction,
    instead of one per statement), and reads run on reader threads (ThreadEngine); on
    PostgreSQL it runs through asyncpg with ``run_sync``. Engine logic is therefore written
    once, as plain SQLAlchemy Core over a Connection.
    """

    engine: AnyEngine
    url: str
    sync_engine: Engine | None = None
    _writer: ThreadPoolExecutor | None = None
    _writer_conn: Connection | None = None

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` inside one transaction and commit it."""
        if self.sync_engine is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        assert self._writer is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._run_here, work)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` on a read connection, off the writer (the driver's) thread."""
        if isinstance(self.engine, ThreadEngine):
            return await self.engine.read(work)
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    @property
    def is_sqlite(self) -> bool:
        """SQLite through the writer thread and reader threads (else PostgreSQL)."""
        return self.sync_engine is not None

    def _run_here(self, work: Callable[[Connection], T]) -> T:
        # The writer thread keeps one connection open: a pool checkout per transaction
        # cost as much as the transaction's own statements.
        if self._writer_conn is None or self._writer_conn.closed:
            assert self.sync_engine is not None
            self._writer_conn = self.sync_engine.connect()
        conn = self._writer_conn
        try:
            with conn.begin():
                return work(conn)
        except DBAPIError as exc:
            if exc.connection_invalidated:
                self._writer_conn = None
            raise

    def _close_here(self) -> None:
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None
        assert self.sync_engine is not None
        self.sync_engine.dispose()

    @property
    def display(self) -> str:
        return describe_url(self.url)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AnyConnection]:
        """A connection in one transaction (with SQLite's write lock), committed on success."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AnyConnection]:
        """A connection for reads."""
        async with self.engine.connect() as conn:
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()
        if self.sync_engine is not None:
            assert self._writer is not None
            await asyncio.get_running_loop().run_in_executor(self._writer, self._close_here)
            self._writer.shutdown(wait=True)


# Alembic's own bookkeeping table, written here for a fresh database (see _prepare_schema).
_ALEMBIC_VERSION = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def _prepare_schema(conn: Connection) -> None:
    """Bring the schema to the newest revision by the cheapest sound path.

    At the head already: nothing to do (the common case; Alembic is not even imported).
    An empty database: one create of every table plus a version stamp, as the migrations
    would leave it (tests/test_schema.py compares the two). Anything else: the migrations.
    """
    if conn.dialect.name == "postgresql":
        # Two processes starting at once on one lab database must not both create tables.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7411)")
    head = head_revision()
    tables = set(inspect(conn).get_table_names())
    if _ALEMBIC_VERSION.name in tables:
        current = conn.execute(select(_ALEMBIC_VERSION.c.version_num)).scalars().all()
        if current == [head]:
            return
    elif not tables:
        if conn.dialect.name == "postgresql":
            add_postgresql_where(Base.metadata)
        Base.metadata.create_all(conn)
        _ALEMBIC_VERSION.create(conn)
        conn.execute(insert(_ALEMBIC_VERSION).values(version_num=head))
        return
    run_migrations(conn)


def run_migrations(conn: Connection) -> None:
    """Upgrade through every migration step not yet applied (Alembic)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def _seed(conn: AnyConnection) -> None:
    now = time.time()
    if (await conn.execute(select(BillingProject.name).limit(1))).first() is None:
        await conn.execute(
            insert(BillingProject).values(name=DEFAULT_BILLING_PROJECT, time_created=now)
        )
    default_pool = select(Pool.name).where(Pool.name == DEFAULT_POOL_NAME)
    if (await conn.execute(default_pool)).first() is None:
        # one local worker with every core of this machine, kept running
        cores_mcpu = (os.cpu_count() or 1) * 1000
        await conn.execute(
            insert(Pool).values(
                name=DEFAULT_POOL_NAME,
                cloud="local",
                worker_cores_mcpu=cores_mcpu,
                min_instances=1,
                max_instances=1,
                max_live_instances=1,
                config={},
            )
        )
    private_pool = select(Pool.name).where(Pool.name == JOB_PRIVATE_POOL)
    if (await conn.execute(private_pool)).first() is None:
        await conn.execute(
            insert(Pool).values(
                name=JOB_PRIVATE_POOL,
                cloud="local",
                worker_cores_mcpu=(os.cpu_count() or 1) * 1000,
                min_instances=0,
                max_instances=4,
                max_live_instances=4,
                idle_timeout_s=0.0,
                config={},
            )
        )
    if (await conn.execute(select(DriverLease.id))).first() is None:
        await conn.execute(insert(DriverLease).values(id=1, holder=None, expires_at=0.0))
    if (await conn.execute(select(ChangeMarker.id))).first() is None:
        await conn.execute(insert(ChangeMarker).values(id=1, seq=0))


async def open_database(url: str | None = None, *, migrate: bool = True) -> Database:
    """Open (and by default upgrade) the database named by ``url``, LABBATCH_DB or the default."""
    resolved = resolve_url(url)
    engine: AnyEngine
    if make_url(resolved).get_backend_name() == "sqlite":
        # Reads begin deferred: a read abandoned halfway must not hold the write lock. The
        # writer begins IMMEDIATE: a deferred transaction that reads and then writes fails
        # with SQLITE_BUSY at once when another process writes; taking the write lock up
        # front makes it wait (busy_timeout) instead.
        sync_url = make_url(resolved).set(drivername="sqlite")
        # A connection's calls hop reader threads (one at a time). The pool never makes a
        # thread wait for a connection: that thread may be the one another holder needs.
        threads = {"check_same_thread": False}
        engine = ThreadEngine(create_engine(sync_url, connect_args=threads, max_overflow=-1))
        _configure_sqlite(engine.sync_engine, begin="BEGIN")
        db = Database(engine=engine, url=resolved)
        db.sync_engine = create_engine(sync_url)
        _configure_sqlite(db.sync_engine, begin="BEGIN IMMEDIATE")
        db._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labbatch-db")
    else:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(resolved, pool_pre_ping=False)
        db = Database(engine=engine, url=resolved)
    try:
        if migrate:
            async with db.begin() as conn:
                await conn.run_sync(_prepare_schema)
                await _seed(conn)
    except (OperationalError, DBAPIError, OSError) as exc:
        await db.close()
        raise ConfigError(
            f"cannot open the database {describe_url(resolved)}: {_short(exc)}"
        ) from exc
    return db


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0] if text else type(exc).__name__
