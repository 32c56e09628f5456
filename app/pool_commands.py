"""`labbatch pool list|show|create|set|scale|offers`."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from app.cli import print_json
from app.clouds import registry
from app.engine import pools
from app.errors import ConfigError
from app.models.db import open_database
from app.models.units import format_duration, format_mcpu

_SETTINGS = {
    # flag: (PoolConfig field, parser, help)
    "worker_cores": ("worker_cores_mcpu", "cores", "cores per worker"),
    "min": ("min_instances", "int", "instances kept running even when idle"),
    "max": ("max_instances", "int", "most instances the pool may have"),
    "max_live": ("max_live_instances", "int", "most instances booting or running at once"),
    "max_new": ("max_new_instances_per_loop", "int", "most instances created per autoscaler loop"),
    "standing_cores": ("standing_worker_cores_mcpu", "cores", "cores of the standing workers"),
    "idle_timeout": ("idle_timeout_s", "float", "seconds before an idle worker retires"),
    "boot_time": ("boot_time_s", "float", "seconds a worker takes to start (local: a delay)"),
    "price": ("price_per_core_hour_usd", "usd", "USD per core-hour (local pools; default 0)"),
    "machine_type": ("machine_type", "str", "the cloud's machine type (Azure: the VM size)"),
    "regions": ("regions", "list", "comma-separated regions (cloud pools: from their zones)"),
}
_ALIASES = {"max": ["--max-instances"], "machine_type": ["--vm-size"]}

# Cloud settings, stored in the pool's config: flag -> (config key, parser, clouds, help)
_CLOUD_SETTINGS = {
    "project": ("project", "str", "gcp", "Google Cloud project ID"),
    "zones": ("zones", "list", "gcp", "comma-separated zones, tried in order"),
    "boot_disk_gb": ("boot_disk_gb", "int", "gcp", "boot disk size in GB (default 20)"),
    "network": ("network", "str", "gcp", "VPC network (default: default)"),
    "subnetwork": ("subnetwork", "str", "gcp", "subnetwork of that network"),
    "use_internal_ip": ("use_internal_ip", "bool", "gcp", "dial the VMs' internal IP (VPN)"),
    "network_tag": ("network_tag", "str", "gcp", "network tag the firewall rule targets"),
    "api_endpoint": ("api_endpoint", "str", "gcp", "another Compute Engine API address"),
    "subscription": ("subscription_id", "str", "azure", "Azure subscription ID"),
    "resource_group": ("resource_group", "str", "azure", "resource group of the VMs"),
    "location": ("location", "str", "azure", "Azure location, e.g. westeurope"),
    "fallback_vm_sizes": ("fallback_vm_sizes", "list", "azure", "sizes tried when one fails"),
    "subnet_id": ("subnet_id", "str", "azure", "ARM id of the subnet the VMs join"),
    "ssh_public_key": ("ssh_public_key", "key", "azure", "SSH public key, or a file holding it"),
    "use_private_ip": ("use_private_ip", "bool", "azure", "no public IP; dial the private one"),
    "base_url": ("base_url", "str", "azure", "another Resource Manager address"),
    "image": ("image", "str", "gcp,azure", "boot image (Azure: publisher:offer:sku:version)"),
    "allow_from": ("allow_from", "list", "gcp,azure", "CIDRs that may reach the worker port"),
    "worker_port": ("worker_port", "int", "gcp,azure", "port the workers listen on (8443)"),
    "worker_requirement": ("worker_requirement", "str", "gcp,azure", "pip requirement"),
}


def add_pool_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    pool = sub.add_parser("pool", parents=[common], help="list, show, create, change, scale pools")
    actions = pool.add_subparsers(dest="pool_command", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[common], help="every pool").add_argument(
        "--json", action="store_true"
    )
    show = actions.add_parser("show", parents=[common], help="a pool and its instances")
    show.add_argument("name")
    show.add_argument("--json", action="store_true")
    for action, help_text in (("create", "a new pool"), ("set", "change a pool's settings")):
        p = actions.add_parser(action, parents=[common], help=help_text)
        p.add_argument("name")
        if action == "create":
            p.add_argument(
                "--cloud",
                default="local",
                choices=pools.CLOUDS,
                help="local worker processes (default), gcp or azure VMs (see docs/clouds.md)",
            )
        for flag, (_field, _kind, text) in _SETTINGS.items():
            names = [f"--{flag.replace('_', '-')}", *_ALIASES.get(flag, [])]
            p.add_argument(*names, dest=flag, help=text)
        p.add_argument(
            "--preemptible",
            "--spot",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="spot VMs: cheaper, but the cloud may take them back (jobs then run again)",
        )
        cloud = p.add_argument_group("cloud settings (gcp, azure; see docs/clouds.md)")
        for flag, (_key, kind, clouds, text) in _CLOUD_SETTINGS.items():
            name = f"--{flag.replace('_', '-')}"
            if kind == "bool":
                cloud.add_argument(
                    name, dest=flag, action=argparse.BooleanOptionalAction, help=f"{clouds}: {text}"
                )
            else:
                cloud.add_argument(name, dest=flag, help=f"{clouds}: {text}")
    scale = actions.add_parser(
        "scale", parents=[common], help="hold a pool at N instances ('auto': release it)"
    )
    scale.add_argument("name")
    scale.add_argument("instances", type=_target, help="a number, or 'auto' to release it")
    offers = actions.add_parser(
        "offers", parents=[common], help="machine types (VM sizes) a cloud pool's zones offer"
    )
    offers.add_argument("name")
    offers.add_argument("--json", action="store_true")


def _target(text: str) -> int | None:
    """`pool scale`'s count: a number of instances, or 'auto' (None)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of instances, or 'auto'") from None


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
        return text
    except (ValueError, InvalidOperation) as exc:
        raise ConfigError(f"--{flag.replace('_', '-')} {text!r}: not a valid {kind}") from exc


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    changes = {
        field: _value(flag, kind, getattr(args, flag))
        for flag, (field, kind, _text) in _SETTINGS.items()
        if getattr(args, flag) is not None
    }
    if args.preemptible is not None:
        changes["preemptible"] = args.preemptible
    return changes


def _cloud_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The cloud settings given on the command line, as config keys."""
    config: dict[str, Any] = {}
    for flag, (key, kind, _clouds, _text) in _CLOUD_SETTINGS.items():
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
            created = await pools.create_pool(db, _new_pool(args))
            print(f"created {_pool_line(created, 0)}")
        elif action == "set":
            changes = _changes(args)
            config = _cloud_changes(args)
            if config:  # merged into the stored cloud settings
                stored = await pools.get_pool(db, args.name)
                changes["config"] = {**stored.config, **config}
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
    if as_json:
        body = _pool_json(pool, len(instances))
        body["instances"] = [
            {
                "name": i.name,
                "state": i.state,
                "cores": i.cores_mcpu / 1000,
                "standing": i.standing,
                "uptime_s": round(i.uptime_s, 1),
                "location": i.location,
            }
            for i in instances
        ]
        print_json(body)
        return
    print(_pool_line(pool, len(instances)))
    if pool.scale_target is not None:
        print(f"  held at {pool.scale_target} instance(s) (`pool scale {name} auto` releases it)")
    print(
        f"  min {pool.min_instances}, max {pool.max_instances} "
        f"(live {pool.max_live_instances}, {pool.max_new_instances_per_loop} new per loop), "
        f"idle timeout {format_duration(pool.idle_timeout_s)}, "
        f"boot {format_duration(pool.boot_time_s)}"
    )
    if pool.cloud != "local":
        print(f"  {pool.machine_type or '(no machine type)'} in {', '.join(pool.regions or [])}")
        for key, value in sorted(pool.config.items()):
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            print(f"  {key}: {shown}")
    problem = await pools.last_start_failure(db, name)
    if problem is not None:
        print(f"  last failure to start a worker: {problem}")
    for i in instances:
        kind = "standing" if i.standing else "autoscaled"
        print(
            f"  {i.name:<20} {i.state:<8} {format_mcpu(i.cores_mcpu):>5} cores  {kind:<10} "
            f"up {format_duration(i.uptime_s)}"
        )


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
        "preemptible": pool.preemptible,
        "price_per_core_hour_usd": (
            None if pool.price_per_core_hour_usd is None else str(pool.price_per_core_hour_usd)
        ),
        "regions": list(pool.regions) if pool.regions else None,
        "machine_type": pool.machine_type,
        "config": pool.config,
        "live_instances": n_live,
        "scale_target": pool.scale_target,
    }
