"""The change marker: how a front end tells the driver (maybe in another process) to look."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from app.models.db import Database
from app.models.tables import ChangeMarker


def bump_marker(conn: Connection) -> None:
    """Tell a driver in another process that there is new work, a cancel or a new setting."""
    conn.execute(update(ChangeMarker).where(ChangeMarker.id == 1).values(seq=ChangeMarker.seq + 1))


async def read_marker(db: Database) -> int:
    async with db.connect() as conn:
        return (
            await conn.execute(select(ChangeMarker.seq).where(ChangeMarker.id == 1))
        ).scalar_one()
