"""`labbatch billing …`, `labbatch cost` and `labbatch estimate`."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from app.cli.common import print_json
from app.engine.billing import costs, projects
from app.engine.billing.egress import batch_locations, egress_warnings
from app.engine.billing.forecast import format_estimate
from app.engine.billing.rates import format_usd
from app.engine.workers.pools import DEFAULT_POOL, get_pool
from app.errors import ConfigError
from app.models.db import open_database
from app.models.spec import load_dag_file


def _usd(text: str | None) -> Decimal | None:
    if text is None or text.lower() == "none":
        return None
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise ConfigError(f"--limit {text!r}: not a number of USD") from exc


def _project_line(p: costs.ProjectSpend) -> str:
    limit = f" of {format_usd(p.limit_usd)} limit" if p.limit_usd is not None else ""
    members = ", ".join(p.users) if p.users else "everyone"
    flag = "  OVER LIMIT" if p.over_limit else ""
    return f"{p.name:<20} spent {format_usd(p.spent_usd)}{limit}; members: {members}{flag}"


async def cmd_billing(args: argparse.Namespace) -> int:
    db = await open_database(args.db)
    try:
        action = args.billing_command
        if action == "list":
            listed = await projects.list_projects(db)
            if args.json:
                print_json([_project_json(p) for p in listed])
            else:
                for p in listed:
                    print(_project_line(p))
            return 0
        if action == "create":
            users = tuple(u.strip() for u in (args.users or "").split(",") if u.strip())
            done = await projects.create_project(
                db, args.name, limit_usd=_usd(args.limit), users=users
            )
        elif action == "set":
            done = await projects.set_limit(db, args.name, _usd(args.limit))
        else:
            member = action == "add-user"
            done = await projects.set_member(db, args.name, args.user, member=member)
        print(_project_line(done))
    finally:
        await db.close()
    return 0


def _project_json(p: costs.ProjectSpend) -> dict[str, Any]:
    return {
        "name": p.name,
        "limit_usd": None if p.limit_usd is None else str(p.limit_usd),
        "spent_usd": str(p.spent_usd),
        "users": list(p.users),
        "over_limit": p.over_limit,
    }


async def cmd_cost(args: argparse.Namespace) -> int:
    db = await open_database(args.db)
    try:
        if args.by == "day":
            totals: dict[Any, Decimal] = await db.run(
                lambda conn: costs.cost_by_day(conn, days=args.days)
            )
        else:
            totals = await db.run(lambda conn: costs.costs_by(conn, args.by))
    finally:
        await db.close()
    if args.json:
        print_json({str(k): str(v) for k, v in totals.items()})
        return 0
    for key, usd in sorted(totals.items(), key=lambda kv: str(kv[0])):
        print(f"{key!s:<24} {format_usd(usd)}")
    print(f"{'total':<24} {format_usd(sum(totals.values(), Decimal(0)))}")
    return 0


async def cmd_estimate(args: argparse.Namespace) -> int:
    spec = load_dag_file(args.file)
    db = await open_database(args.db)
    try:
        names = {job.pool or DEFAULT_POOL for job in spec.jobs}
        if args.pool:
            names = {args.pool}
        if len(names) > 1:
            raise ConfigError(
                f"the jobs of {args.file} use several pools ({', '.join(sorted(names))}); "
                "estimate one at a time with --pool"
            )
        pool = await get_pool(db, names.pop())
        refreshed = await db.read(costs.refreshed_prices)
    finally:
        await db.close()
    estimate = costs.estimate_on_pool(
        spec.jobs, pool, default_duration_s=args.default_duration, refreshed=refreshed
    )
    print(format_estimate(estimate))
    found = batch_locations(spec)
    for warning in await egress_warnings(pool.name, pool.cloud, pool.regions, pool.config, found):
        print(f"warning: {warning}", file=sys.stderr)
    return 0
