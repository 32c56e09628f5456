"""Billing projects: who may submit to them, their limits, and enforcing those limits."""

from __future__ import annotations

import logging
import re
import time
from decimal import Decimal

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from app.engine.batches.completion import Changes, cancel_batch_jobs
from app.engine.billing.costs import ProjectSpend, costs_by
from app.engine.billing.rates import format_usd
from app.engine.marker import bump_marker
from app.errors import ConfigError, NotFoundError, UserError
from app.models.db import Database
from app.models.tables import Batch, BillingProject, BillingProjectUser

log = logging.getLogger("labbatch.billing")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def read_projects(conn: Connection, *, spend: bool = True) -> list[ProjectSpend]:
    """Every project; ``spend=False`` skips adding up their costs (a scan of all attempts)."""
    spent = costs_by(conn, "billing_project") if spend else {}
    users: dict[str, list[str]] = {}
    for project, user in conn.execute(
        select(BillingProjectUser.billing_project, BillingProjectUser.user).order_by(
            BillingProjectUser.user
        )
    ):
        users.setdefault(project, []).append(user)
    return [
        ProjectSpend(
            name=name,
            limit_usd=None if limit is None else Decimal(str(limit)),
            users=tuple(users.get(name, ())),
            spent_usd=spent.get(name, Decimal(0)),
        )
        for name, limit in conn.execute(
            select(BillingProject.name, BillingProject.limit_usd).order_by(BillingProject.name)
        )
    ]


def _project(conn: Connection, name: str, *, spend: bool = True) -> ProjectSpend:
    for project in read_projects(conn, spend=spend):
        if project.name == name:
            return project
    known = ", ".join(p.name for p in read_projects(conn, spend=False))
    raise NotFoundError(f"billing project {name!r} does not exist (known: {known})")


def check_submit(conn: Connection, name: str, user: str) -> None:
    """Refuse a batch its user may not bill to this project, or that is over its limit."""
    project = _project(conn, name, spend=False)
    if project.limit_usd is not None:
        project = _project(conn, name)
    if project.users and user not in project.users:
        raise UserError(
            f"{user} is not a member of billing project {name!r} "
            f"(members: {', '.join(project.users)})"
        )
    if project.over_limit:
        assert project.limit_usd is not None
        raise UserError(
            f"billing project {name!r} has spent {format_usd(project.spent_usd)} of its "
            f"{format_usd(project.limit_usd)} limit; nothing was submitted. Raise the limit "
            f"with `labbatch billing set {name} --limit USD`"
        )


def cancel_over_limit(conn: Connection, now: float) -> Changes:
    """Cancel the running batches of every project that has reached its limit."""
    changes = Changes()
    limited = conn.execute(select(BillingProject.name).where(BillingProject.limit_usd.is_not(None)))
    if limited.first() is None:
        return changes  # no limits: nothing to add up
    for project in read_projects(conn):
        if not project.over_limit:
            continue
        running = conn.execute(
            select(Batch.id).where(
                Batch.billing_project == project.name,
                Batch.complete.is_(False),
                Batch.cancelled.is_(False),
            )
        ).scalars()
        for batch_id in list(running):
            log.warning(
                "billing project %s reached its limit (%s spent): cancelling batch %d",
                project.name,
                format_usd(project.spent_usd),
                batch_id,
            )
            cancel_batch_jobs(conn, batch_id, now, changes)
    if changes.cancelled_batches:
        bump_marker(conn)
    return changes


async def list_projects(db: Database) -> list[ProjectSpend]:
    return await db.run(read_projects)


async def create_project(
    db: Database, name: str, *, limit_usd: Decimal | None = None, users: tuple[str, ...] = ()
) -> ProjectSpend:
    if not NAME.match(name):
        raise ConfigError(f"billing project name {name!r}: letters, digits, '_', '.', '-'")
    _check_limit(limit_usd)

    def store(conn: Connection) -> ProjectSpend:
        if conn.execute(select(BillingProject.name).where(BillingProject.name == name)).first():
            raise ConfigError(f"billing project {name!r} exists already")
        conn.execute(
            insert(BillingProject).values(name=name, limit_usd=limit_usd, time_created=time.time())
        )
        for user in users:
            conn.execute(insert(BillingProjectUser).values(billing_project=name, user=user))
        return _project(conn, name)

    return await db.run(store)


async def set_limit(db: Database, name: str, limit_usd: Decimal | None) -> ProjectSpend:
    _check_limit(limit_usd)

    def store(conn: Connection) -> ProjectSpend:
        _project(conn, name)
        conn.execute(
            update(BillingProject).where(BillingProject.name == name).values(limit_usd=limit_usd)
        )
        bump_marker(conn)
        return _project(conn, name)

    return await db.run(store)


async def set_member(db: Database, name: str, user: str, *, member: bool) -> ProjectSpend:
    def store(conn: Connection) -> ProjectSpend:
        project = _project(conn, name)
        if member and user not in project.users:
            conn.execute(insert(BillingProjectUser).values(billing_project=name, user=user))
        elif not member:
            conn.execute(
                delete(BillingProjectUser).where(
                    BillingProjectUser.billing_project == name, BillingProjectUser.user == user
                )
            )
        return _project(conn, name)

    return await db.run(store)


def _check_limit(limit_usd: Decimal | None) -> None:
    if limit_usd is not None and (not limit_usd.is_finite() or limit_usd < 0):
        raise ConfigError(f"a limit must be a number of USD >= 0, not {limit_usd}")
