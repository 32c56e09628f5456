"""`labbatch pool list|show|create|set|scale|offers`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from app.cli.common import print_json
from app.cli.parsers import POOL_CLOUD_SETTINGS, POOL_SETTINGS
from app.clouds import registry
from app.engine.workers import pools, sharing
from app.engine.workers.scratch_check import check_scratch
from app.errors import ConfigError
from app.models.db import open_database
from app.models.units import format_duration, format_mcpu, parse_duration_s


def _value(flag: str, kind: str, text: str) -> Any:
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "cores":
            return round(float(text) * 1000)
        if kind == "usd":
            return Decimal(text)
        if kind == "list":
            return tuple(part.strip() for part in text.split(",") if part.strip()) or None
        if kind == "duration":
            return parse_duration_s(text)
        if kind == "location":
            return text if "://" in text else str(Path(text).expanduser().resolve())
        return text
    except (ValueError, InvalidOperation) as exc:
        raise ConfigError(f"--{flag.replace('_', '-')} {text!r}: not a valid {kind}") from exc


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {
        field: _value(flag, kind, getattr(args, flag))
        for flag, (field, kind, _text) in POOL_SETTINGS.items()
        if getattr(args, flag) is not None
    }
    if args.preemptible is not None:
        changes["preemptible"] = args.preemptible
    return changes


def _cloud_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The cloud settings given on the command line, as config keys."""
    config: dict[str, Any] = {}
    for flag, (key, kind, _clouds, _text) in POOL_CLOUD_SETTINGS.items():
        text = getattr(args, flag)
        if text is None:
            continue
        if kind == "bool":
            config[key] = bool(text)
        elif kind == "key":
            config[key] = _ssh_key(text)
        elif kind == "list":
            config[key] = list(_value(flag, kind, text) or [])
        else:
            config[key] = _value(flag, kind, text)
    return config


def _ssh_key(text: str) -> str:
    """An SSH public key given as text, or the path of a file holding one."""
    if text.startswith(("ssh-", "ecdsa-")):
        return text.strip()
    path = Path(text).expanduser()
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"--ssh-public-key {text}: not a key and not a readable file ({exc.strerror})"
        ) from exc


def _new_pool(args: argparse.Namespace) -> pools.PoolConfig:
    changes = _changes(args)
    changes.setdefault("max_live_instances", changes.get("max_instances", 1))
    config = _cloud_changes(args)
    if args.cloud == "local" and config:
        raise ConfigError(
            f"pool {args.name}: {', '.join('--' + k.replace('_', '-') for k in config)} "
            "are settings of cloud pools; add --cloud gcp or --cloud azure"
        )
    if args.cloud != "local":
        changes.setdefault("boot_time_s", pools.CLOUD_BOOT_TIME_S)
    if args.cloud != "local" and "worker_cores_mcpu" not in changes:
        cores = pools.machine_type_cores(args.cloud, changes.get("machine_type"))
        if cores is None:
            raise ConfigError(
                f"pool {args.name}: give --worker-cores (the cores of machine type "
                f"{changes.get('machine_type') or '(none given: --machine-type)'})"
            )
        changes["worker_cores_mcpu"] = cores
    return pools.PoolConfig(name=args.name, cloud=args.cloud, config=config, **changes)


async def cmd_pool(args: argparse.Namespace) -> int:
    db = await open_database(args.db)
    try:
        action = args.pool_command
        if action == "list":
            listed = await pools.list_pools(db)
            if args.json:
                print_json([_pool_json(p, await pools.count_live(db, p.name)) for p in listed])
            for p in [] if args.json else listed:
                print(_pool_line(p, await pools.count_live(db, p.name)))
        elif action == "show":
            await _show(db, args.name, as_json=args.json)
        elif action == "create":
            new_pool = _new_pool(args)
            await _check_scratch(new_pool)
            created = await pools.create_pool(db, new_pool)
            print(f"created {_pool_line(created, 0)}")
        elif action == "set":
            changes = _changes(args)
            config = _cloud_changes(args)
            if args.shared is not None:  # first: it checks the pool is local, changes nothing else
                await sharing.share(db, args.name, args.user, shared=args.shared)
            if config:  # merged into the stored cloud settings
                stored = await pools.get_pool(db, args.name)
                changes["config"] = {**stored.config, **config}
            if {"scratch", "config"} & changes.keys():
                stored = await pools.get_pool(db, args.name)
                await _check_scratch(replace(stored, **changes))
            changed = await pools.set_pool(db, args.name, **changes)
            print(f"changed {_pool_line(changed, await pools.count_live(db, args.name))}")
        elif action == "scale" and args.instances is None:
            await pools.release_scale(db, args.name)
            print(f"pool {args.name}: the autoscaler sizes it again", file=sys.stderr)
        elif action == "scale":
            await pools.scale_pool(db, args.name, args.instances)
            print(
                f"pool {args.name}: held at {args.instances} instance(s) until "
                f"`labbatch pool scale {args.name} auto` or new limits (idle workers retire "
                "first; busy ones when their jobs end)",
                file=sys.stderr,
            )
        elif action == "offers":
            await _offers(await pools.get_pool(db, args.name), as_json=args.json)
    finally:
        await db.close()
    return 0


async def _check_scratch(pool: pools.PoolConfig) -> None:
    """Refuse a cloud pool's scratch location that does not work; warn about egress."""
    checked = await check_scratch(pool)
    for warning in checked.warnings if checked else ():
        print(f"warning: pool {pool.name}: {warning}", file=sys.stderr)


async def _offers(pool: pools.PoolConfig, *, as_json: bool) -> None:
    """Print the machine types the pool's zones (Azure: location) offer, its own marked."""
    if pool.cloud == "local":
        print(
            f"pool {pool.name} is a local pool: local pools have no machine types "
            "(their workers run on this computer)",
            file=sys.stderr,
        )
        if as_json:
            print_json([])
        return
    offered = await registry.offers(pool.cloud, pool.name, pools.cloud_config(pool))
    offered.sort(key=lambda t: (t[1], t[2], t[0]))  # by cores, then memory
    if as_json:
        print_json(
            [
                {
                    "name": name,
                    "cores": cores,
                    "memory_mb": memory_mb,
                    "current": name == pool.machine_type,
                }
                for name, cores, memory_mb in offered
            ]
        )
        return
    where = pool.config.get("location") or ", ".join(pool.config.get("zones") or [])
    kind = "VM sizes" if pool.cloud == "azure" else "machine types"
    print(f"{pool.name} ({pool.cloud}): {len(offered)} {kind} offered in {where}")
    width = max([len(name) for name, _, _ in offered] + [4])
    print(f"   {'NAME':<{width}}  CORES  MEMORY")
    for name, cores, memory_mb in offered:
        mark = "*" if name == pool.machine_type else " "
        print(f" {mark} {name:<{width}}  {cores:>5}  {_memory(memory_mb)}")
    if pool.machine_type and pool.machine_type in {name for name, _, _ in offered}:
        print(f" * the pool's machine type ({pool.machine_type})")
    elif pool.machine_type:
        print(f"the pool's machine type {pool.machine_type} is not offered there")


def _memory(memory_mb: int) -> str:
    return f"{round(memory_mb / 1024, 2):g} GB"


async def _show(db: Any, name: str, *, as_json: bool) -> None:
    pool = await pools.get_pool(db, name)
    instances = await pools.pool_instances(db, name)
    n_live = sum(1 for i in instances if i.state != "deleting")
    if as_json:
        body = _pool_json(pool, n_live)
        body["instances"] = [
            {
                "name": i.name,
                "state": i.shown_state,
                "cores": i.cores_mcpu / 1000,
                "standing": i.standing,
                "uptime_s": round(i.uptime_s, 1),
                "location": i.location,
                "age_s": round(i.age_s, 1),
                "reason": i.reason,
                "delete_error": i.delete_error,
            }
            for i in instances
        ]
        print_json(body)
        return
    print(_pool_line(pool, n_live))
    if pool.scale_target is not None:
        print(f"  held at {pool.scale_target} instance(s) (`pool scale {name} auto` releases it)")
    print(
        f"  min {pool.min_instances}, max {pool.max_instances} "
        f"(live {pool.max_live_instances}, {pool.max_new_instances_per_loop} new per loop), "
        f"idle timeout {format_duration(pool.idle_timeout_s)}, "
        f"boot {format_duration(pool.boot_time_s)} (deadline "
        f"{format_duration(pool.boot_deadline_s)})"
    )
    print(
        f"  files kept in {pool.scratch or '<data dir>/scratch'} for "
        f"{format_duration(pool.retention_s)} after their batch ends"
    )
    if pool.cloud != "local":
        print(f"  {pool.machine_type or '(no machine type)'} in {', '.join(pool.regions or [])}")
        for key, value in sorted(pool.config.items()):
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            print(f"  {key}: {shown}")
    elif pool.config.get(pools.SHARED_BY):
        users = ", ".join(pool.config[pools.SHARED_BY])
        print(f"  shared: in a lab database, runs every user's jobs while {users} drives it")
    problem = await pools.last_start_failure(db, name)
    if problem is not None:
        print(f"  last failure to start a worker: {problem}")
    for i in instances:
        kind = "standing" if i.standing else "autoscaled"
        print(
            f"  {i.name:<20} {i.shown_state:<8} {format_mcpu(i.cores_mcpu):>5} cores  "
            f"{kind:<10} {_age(i)}"
        )
        if i.delete_error:
            print(f"    not deleted yet ({i.reason}): {i.delete_error}")


def _age(i: pools.InstanceInfo) -> str:
    if i.state == "active":
        return f"up {format_duration(i.uptime_s)}"
    return f"for {format_duration(i.age_s)}"  # booting, or deleting since it was made


def _pool_line(pool: pools.PoolConfig, n_live: int) -> str:
    price = f", ${pool.price_per_core_hour_usd}/core-hour" if pool.price_per_core_hour_usd else ""
    return (
        f"{pool.name} ({pool.cloud}): {n_live} live of max {pool.max_instances} workers x "
        f"{format_mcpu(pool.worker_cores_mcpu)} cores{price}"
    )


def _pool_json(pool: pools.PoolConfig, n_live: int) -> dict[str, Any]:
    return {
        "name": pool.name,
        "cloud": pool.cloud,
        "worker_cores": pool.worker_cores_mcpu / 1000,
        "min_instances": pool.min_instances,
        "max_instances": pool.max_instances,
        "max_live_instances": pool.max_live_instances,
        "max_new_instances_per_loop": pool.max_new_instances_per_loop,
        "standing_worker_cores": pool.standing_worker_cores_mcpu / 1000,
        "idle_timeout_s": pool.idle_timeout_s,
        "boot_time_s": pool.boot_time_s,
        "boot_deadline_s": pool.boot_deadline_s,
        "preemptible": pool.preemptible,
        "price_per_core_hour_usd": (
            None if pool.price_per_core_hour_usd is None else str(pool.price_per_core_hour_usd)
        ),
        "regions": list(pool.regions) if pool.regions else None,
        "machine_type": pool.machine_type,
        "config": pool.config,
        "scratch": pool.scratch,
        "retention_s": pool.retention_s,
        "live_instances": n_live,
        "scale_target": pool.scale_target,
    }
