"""The driver lease: one row says which process runs the driver loops."""

from __future__ import annotations

import os
import socket
import time
import uuid

from sqlalchemy import or_, select, update
from sqlalchemy.engine import Connection

from app.models.db import Database
from app.models.tables import DriverLease

# A lease lapses this long after its last renewal; another process may then take over.
LEASE_TTL_S = float(os.environ.get("LABBATCH_LEASE_TTL_S", "6"))
RENEW_EVERY_S = min(2.0, LEASE_TTL_S / 3)


def new_holder_id(user: str | None = None) -> str:
    """Names this process in the lease row: its user, host, pid and a random suffix."""
    where = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"{user}@{where}" if user else where


def holder_user(holder: str) -> str | None:
    """The user a lease holder drives for (see new_holder_id), if it named one."""
    head = holder.split(":", 1)[0]  # user@host
    return head.rsplit("@", 1)[0] if "@" in head else None


async def try_acquire(db: Database, holder: str) -> bool:
    """Take the lease if it is free, lapsed or already ours; renew it if ours."""
    now = time.time()

    def take(conn: Connection) -> bool:
        result = conn.execute(
            update(DriverLease)
            .where(
                DriverLease.id == 1,
                or_(
                    DriverLease.holder.is_(None),
                    DriverLease.holder == holder,
                    DriverLease.expires_at < now,
                ),
            )
            .values(holder=holder, expires_at=now + LEASE_TTL_S, acquired_at=now)
        )
        return (result.rowcount or 0) == 1

    # through db.run: on SQLite a renewal cancelled halfway (the driver stopping) still ends
    # its transaction on the writer thread instead of leaving the database locked
    return await db.run(take)


async def release(db: Database, holder: str) -> None:
    def free(conn: Connection) -> None:
        conn.execute(
            update(DriverLease)
            .where(DriverLease.id == 1, DriverLease.holder == holder)
            .values(holder=None, expires_at=0.0)
        )

    await db.run(free)


async def current_holder(db: Database) -> str | None:
    """The process holding a live lease, or None."""
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(DriverLease.holder, DriverLease.expires_at).where(DriverLease.id == 1)
            )
        ).first()
    if row is None or row.holder is None or row.expires_at < time.time():
        return None
    return row.holder
