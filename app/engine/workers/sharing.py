"""Whose jobs a local pool runs in a lab (a PostgreSQL database many people share).

A local pool's workers are processes on the machine of whoever drives the database, under
that person's OS account. So in a lab a local pool runs only its driver's user's jobs, unless
that user has agreed to run everyone's (`labbatch pool set local --shared`); the agreement is
per user, so a colleague who takes the lease over does not inherit it.
"""

from __future__ import annotations

from app.engine.workers.pools import SHARED_BY, PoolConfig, get_pool, set_pool
from app.errors import ConfigError
from app.models.db import Database

__all__ = ["SHARED_BY", "is_lab", "runs_only", "share"]


def runs_only(pool: PoolConfig, driver_user: str | None, *, lab: bool) -> str | None:
    """The one user whose jobs ``pool`` may run under this driver, or None for everyone's."""
    if not lab or pool.cloud != "local" or driver_user is None:
        return None
    if driver_user in pool.config.get(SHARED_BY, ()):
        return None
    return driver_user


def is_lab(db: Database) -> bool:
    """A database many users share (PostgreSQL), as opposed to one user's SQLite file."""
    return db.engine.dialect.name == "postgresql"


async def share(db: Database, name: str, user: str, *, shared: bool) -> PoolConfig:
    """Let (or stop letting) pool ``name`` run every user's jobs while ``user`` drives it."""
    pool = await get_pool(db, name)
    if pool.cloud != "local":
        raise ConfigError(
            f"pool {pool.name}: --shared is a setting of local pools (a cloud pool's VMs run "
            "every user's jobs)"
        )
    users = [u for u in pool.config.get(SHARED_BY, ()) if u != user]
    if shared:
        users.append(user)
    config = {**pool.config, SHARED_BY: sorted(users)}
    if not users:
        del config[SHARED_BY]
    return await set_pool(db, pool.name, config=config)
