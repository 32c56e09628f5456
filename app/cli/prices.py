"""`labbatch prices refresh` and `labbatch prices show`."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal

from app.cli.common import print_json
from app.engine.billing import prices
from app.engine.workers.pools import list_pools
from app.errors import ConfigError, UserError
from app.models.db import Database, open_database


async def cmd_prices(args: argparse.Namespace) -> int:
    db = await open_database(args.db)
    try:
        if args.prices_command == "refresh":
            return await _refresh(db, args)
        return await _show(db, args)
    finally:
        await db.close()


async def _refresh(db: Database, args: argparse.Namespace) -> int:
    if args.endpoint and not args.cloud:
        raise ConfigError("--endpoint needs --cloud: it is the address of one cloud's API")
    clouds = [args.cloud] if args.cloud else prices.clouds_with_pools(await list_pools(db))
    if not clouds:
        print("no cloud pools: nothing to refresh (the local pool's price is a pool setting)")
        return 0
    failed = 0
    for cloud in clouds:
        try:
            report = await prices.refresh_prices(db, cloud, endpoint=args.endpoint)
        except UserError as exc:
            if len(clouds) == 1:
                raise
            print(f"labbatch: {cloud}: {exc}", file=sys.stderr)
            failed = failed or exc.exit_code
            continue
        for line in report_lines(report):
            print(line)
    return failed


def report_lines(report: prices.RefreshReport) -> list[str]:
    """A refresh report as a person reads it."""
    lines = []
    if report.source:
        lines.append(f"{report.cloud}: {report.n_fetched} prices read from {report.source}")
    for change in report.changes:
        old = "new" if change.old_usd_per_unit_hour is None else _usd(change.old_usd_per_unit_hour)
        lines.append(
            f"  {change.resource}: {old} → {_usd(change.new_usd_per_unit_hour)} "
            f"(version {change.version})"
        )
    if report.source and not report.changes:
        lines.append(f"  no {report.cloud} price changed")
    for resource in report.missing:
        lines.append(f"  not in the catalogue, the price file's figure stays: {resource}")
    for pool in report.unpriced_pools:
        lines.append(f"  pool {pool} has no machine type or region: nothing to ask for it")
    return lines


async def _show(db: Database, args: argparse.Namespace) -> int:
    rows = await prices.show_prices(db, args.cloud)
    if args.json:
        print_json(
            [
                {
                    "resource": r.resource,
                    "cloud": r.cloud,
                    "usd_per_unit_hour": str(r.usd_per_unit_hour),
                    "source": r.source,
                    "as_of": r.as_of,
                    "version": r.version,
                }
                for r in rows
            ]
        )
        return 0
    width = max((len(r.resource) for r in rows), default=0)
    for r in rows:
        version = f"v{r.version}" if r.version is not None else "not billed yet"
        print(
            f"{r.resource:<{width}}  {_usd(r.usd_per_unit_hour):>16}/h  "
            f"{r.source} {r.as_of}  {version}"
        )
    return 0


def _usd(amount: Decimal) -> str:
    """A rate to six significant digits, without trailing zeros: '$0.031611', '$0.000210959'
    (a monthly disk price over 730 hours has no end; --json gives every digit)."""
    text = format(Decimal(f"{amount:.6g}").normalize(), "f")
    return f"${text}"
