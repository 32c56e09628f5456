"""Pools: their autoscaler configuration, and what the front end may change about them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from app.clouds import registry
from app.clouds.storage import STORAGE_KEY, storage_problems
from app.engine.marker import bump_marker
from app.errors import CloudError, ConfigError, NotFoundError
from app.models.db import DEFAULT_POOL_NAME, JOB_PRIVATE_POOL, Database
from app.models.tables import Instance, InstanceState, Pool

DEFAULT_POOL = DEFAULT_POOL_NAME
PRIVATE_POOL = JOB_PRIVATE_POOL  # one worker per job that names a machine type
CLOUDS = ("local", *registry.CLOUD_KINDS)
# the one setting a local pool keeps in its config: users who share it (see sharing.py)
SHARED_BY = "shared_by"
NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """A pool's settings, as stored."""

    name: str
    cloud: str = "local"
    worker_cores_mcpu: int = 1000
    machine_type: str | None = None
    preemptible: bool = False
    min_instances: int = 0
    max_instances: int = 1
    max_live_instances: int = 1
    max_new_instances_per_loop: int = 10
    standing_worker_cores_mcpu: int = 0
    idle_timeout_s: float = 300.0
    boot_time_s: float = 0.0
    boot_deadline_s: float = 600.0  # a worker that has not answered by then is deleted
    regions: tuple[str, ...] | None = None
    price_per_core_hour_usd: Decimal | None = None
    config: dict[str, Any] = field(default_factory=dict)
    scratch: str | None = None  # where jobs' output files are kept; None: <data dir>/scratch
    retention_s: float = 3 * 86400.0  # how long they stay after their batch ended
    # a user's "scale to N", held (the autoscaler adds none, idle ones stay) until released
    # or until the limits change
    scale_target: int | None = None

    def check(self) -> None:
        """Refuse settings that cannot work, with a message that says which and why."""
        problems = []
        if not NAME.match(self.name):
            problems.append(f"name {self.name!r}: use lowercase letters, digits and '-'")
        if self.cloud not in CLOUDS:
            problems.append(f"cloud {self.cloud!r}: one of {', '.join(CLOUDS)}")
        if self.worker_cores_mcpu < 250:
            problems.append("worker cores must be at least 0.25")
        if not 0 <= self.min_instances <= self.max_live_instances <= self.max_instances:
            problems.append(
                "need 0 <= min instances <= max live instances <= max instances "
                f"(got {self.min_instances}, {self.max_live_instances}, {self.max_instances})"
            )
        if self.max_new_instances_per_loop < 1:
            problems.append("max new instances per loop must be at least 1")
        if self.idle_timeout_s < 0 or self.boot_time_s < 0:
            problems.append("idle timeout and boot time cannot be negative")
        if self.boot_deadline_s <= 0:
            problems.append("boot deadline must be more than 0 seconds")
        if self.price_per_core_hour_usd is not None and self.price_per_core_hour_usd < 0:
            problems.append("price per core-hour cannot be negative")
        if self.retention_s < 0:
            problems.append("retention cannot be negative")
        if (
            self.scratch is not None
            and self.cloud == "local"
            and not Path(self.scratch).is_absolute()
        ):
            problems.append(f"scratch {self.scratch!r}: give an absolute directory")
        if self.cloud == "local" and set(self.config) - {SHARED_BY}:
            problems.append("local pools take no cloud settings")
        if self.cloud in registry.CLOUD_KINDS:
            try:
                registry.check_config(self.cloud, self.name, cloud_config(self))
            except CloudError as exc:
                problems.append(str(exc).removeprefix(f"pool {self.name}: "))
            if self.scratch or self.config.get(STORAGE_KEY):
                problems += storage_problems(self.cloud, self.scratch, self.config)
        if problems:
            raise ConfigError(f"pool {self.name}: " + "; ".join(problems))


# what a new cloud pool assumes a VM takes to boot and install the worker (the autoscaler
# plans over it; local pools use their boot time as a start delay instead)
CLOUD_BOOT_TIME_S = 90.0

# the key under which each cloud's driver reads the pool's machine type from its settings
MACHINE_TYPE_KEY = {"gcp": "machine_type", "azure": "vm_size"}


def cloud_config(pool: PoolConfig) -> dict[str, Any]:
    """The settings a cloud driver reads for a pool: its ``config`` plus its machine type."""
    config = dict(pool.config)
    key = MACHINE_TYPE_KEY.get(pool.cloud)
    if key is not None and pool.machine_type:
        config[key] = pool.machine_type
    return config


def machine_type_cores(cloud: str, machine_type: str | None) -> int | None:
    """The cores (mcpu) of a machine type, read from its name where the cloud's naming tells
    them: GCE 'n2-standard-8' (the last number), Azure 'Standard_D4s_v5' (the first)."""
    if not machine_type:
        return None
    if cloud == "gcp":
        match = re.search(r"-(\d+)$", machine_type)
    elif cloud == "azure":
        match = re.search(r"^Standard_[A-Za-z]+(\d+)", machine_type)
    else:
        return None
    return int(match.group(1)) * 1000 if match else None


def region_of(cloud: str, location: str) -> str:
    """The region of an instance's location: a GCE zone's region ('us-central1-a' ->
    'us-central1'); Azure locations and everything else are regions already."""
    if cloud == "gcp" and location.count("-") >= 2:
        return location.rsplit("-", 1)[0]
    return location


def with_cloud_defaults(pool: PoolConfig) -> PoolConfig:
    """Fill what billing and the autoscaler read from a cloud pool's settings: its machine
    type (moved out of ``config``, so that it is kept in one place) and its regions (a GCE
    zone's region, an Azure location) unless they are set."""
    key = MACHINE_TYPE_KEY.get(pool.cloud)
    if key is None:
        return pool
    changes: dict[str, Any] = {}
    if key in pool.config:
        config = dict(pool.config)
        machine_type = config.pop(key)
        changes["config"] = config
        if isinstance(machine_type, str) and machine_type:
            changes["machine_type"] = machine_type
    if not pool.regions:
        if pool.cloud == "gcp":
            zones = pool.config.get("zones") or []
            regions = [region_of("gcp", z) for z in zones if isinstance(z, str)]
            changes["regions"] = tuple(dict.fromkeys(regions)) or None
        elif isinstance(pool.config.get("location"), str):
            changes["regions"] = (pool.config["location"],)
    return replace(pool, **changes) if changes else pool


# the instances a pool lists: live ones, and retired ones whose VM is not deleted yet
SHOWN_STATES = (InstanceState.PENDING, InstanceState.ACTIVE, InstanceState.DELETING)


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """An instance as the pool view shows it."""

    name: str
    state: str
    cores_mcpu: int
    location: str | None
    standing: bool
    time_created: float
    time_activated: float | None
    reason: str | None
    delete_error: str | None = None  # why its VM is not deleted yet

    @property
    def uptime_s(self) -> float:
        return time.time() - self.time_activated if self.time_activated else 0.0

    @property
    def age_s(self) -> float:
        return time.time() - self.time_created

    @property
    def shown_state(self) -> str:
        """The state as a user reads it: a pending worker is booting."""
        return "booting" if self.state == InstanceState.PENDING else self.state


_COLUMNS = [f.name for f in fields(PoolConfig)]
LIMITS = ("min_instances", "max_instances", "max_live_instances")


def _from_row(row: Any) -> PoolConfig:
    values = {name: getattr(row, name) for name in _COLUMNS}
    values["regions"] = tuple(values["regions"]) if values["regions"] else None
    price = values["price_per_core_hour_usd"]
    values["price_per_core_hour_usd"] = None if price is None else Decimal(str(price))
    values["config"] = dict(values["config"] or {})
    return PoolConfig(**values)


def _to_row(pool: PoolConfig) -> dict[str, Any]:
    row = {name: getattr(pool, name) for name in _COLUMNS}
    row["regions"] = list(pool.regions) if pool.regions else None
    return row


def read_pools(conn: Connection) -> dict[str, PoolConfig]:
    return {row.name: _from_row(row) for row in conn.execute(select(*Pool.__table__.c))}


async def list_pools(db: Database) -> list[PoolConfig]:
    pools = await db.run(read_pools)
    return [pools[name] for name in sorted(pools)]


async def get_pool(db: Database, name: str) -> PoolConfig:
    pools = await db.run(read_pools)
    if name not in pools:
        raise NotFoundError(f"there is no pool {name!r} (pools: {', '.join(sorted(pools))})")
    return pools[name]


async def create_pool(db: Database, pool: PoolConfig) -> PoolConfig:
    pool = with_cloud_defaults(pool)
    pool.check()

    def store(conn: Connection) -> None:
        if conn.execute(select(Pool.name).where(Pool.name == pool.name)).first() is not None:
            raise ConfigError(f"pool {pool.name!r} exists already; change it with `pool set`")
        conn.execute(insert(Pool).values(**_to_row(pool)))
        bump_marker(conn)

    await db.run(store)
    return pool


async def set_pool(db: Database, name: str, **changes: Any) -> PoolConfig:
    """Change some settings of a pool; the driver applies them at its next look."""
    unknown = set(changes) - set(_COLUMNS) - {"name"}
    if unknown:
        raise ConfigError(f"unknown pool setting(s): {', '.join(sorted(unknown))}")

    def store(conn: Connection) -> PoolConfig:
        pools = read_pools(conn)
        if name not in pools:
            raise NotFoundError(f"there is no pool {name!r}")
        old = pools[name]
        new = with_cloud_defaults(replace(old, **changes))
        if any(getattr(new, limit) != getattr(old, limit) for limit in LIMITS):
            new = replace(new, scale_target=None)  # new limits: the autoscaler decides again
        new.check()
        conn.execute(update(Pool).where(Pool.name == name).values(**_to_row(new)))
        bump_marker(conn)
        return new

    return await db.run(store)


async def scale_pool(db: Database, name: str, target: int) -> PoolConfig:
    """Hold the pool at ``target`` workers: the driver starts or retires workers to reach it
    (idle ones only), and the autoscaler keeps out until `release_scale` or new limits."""
    pool = await get_pool(db, name)
    if not pool.min_instances <= target <= pool.max_live_instances:
        drained = " (it was drained)" if pool.max_live_instances == 0 else ""
        raise ConfigError(
            f"pool {name}: can scale to {pool.min_instances} … {pool.max_live_instances} "
            f"instances (its min and max live instances{drained}), not {target}; raise its "
            f"max live instances first (`labbatch pool set {name} --max-live {target}`, or "
            "the Limits form of the Pools tab)"
        )
    return await _store_target(db, name, target)


async def release_scale(db: Database, name: str) -> PoolConfig:
    """Forget the user's scale target: the autoscaler sizes the pool again."""
    await get_pool(db, name)
    return await _store_target(db, name, None)


async def _store_target(db: Database, name: str, target: int | None) -> PoolConfig:
    def store(conn: Connection) -> PoolConfig:
        conn.execute(update(Pool).where(Pool.name == name).values(scale_target=target))
        bump_marker(conn)
        return read_pools(conn)[name]

    return await db.run(store)


async def pool_instances(db: Database, name: str, *, live_only: bool = True) -> list[InstanceInfo]:
    def read(conn: Connection) -> list[InstanceInfo]:
        query = (
            select(*Instance.__table__.c)
            .where(Instance.pool == name)
            .order_by(Instance.time_created)
        )
        if live_only:  # and the ones still being deleted: they may still bill
            query = query.where(Instance.state.in_(SHOWN_STATES))
        return [instance_info(row) for row in conn.execute(query)]

    return await db.run(read)


def instance_info(row: Any) -> InstanceInfo:
    """An instances row as the pool view shows it."""
    return InstanceInfo(
        name=row.name,
        state=row.state,
        cores_mcpu=row.cores_mcpu,
        location=row.location,
        standing=row.standing,
        time_created=row.time_created,
        time_activated=row.time_activated,
        reason=row.reason,
        delete_error=row.delete_error,
    )


async def count_live(db: Database, name: str) -> int:
    def read(conn: Connection) -> int:
        return conn.execute(
            select(func.count()).where(
                Instance.pool == name,
                Instance.state.in_([InstanceState.PENDING, InstanceState.ACTIVE]),
            )
        ).scalar_one()

    return await db.run(read)


START_FAILURE_WINDOW_S = 3600.0
START_FAILURE = "could not start: "  # the reason the fleet gives a worker that failed to start


async def last_start_failures(db: Database) -> dict[str, str]:
    """Pool -> why its latest worker that could not start failed (credentials, quota,
    capacity, machine type…), for pools where one failed within the last hour and none
    started since."""

    def read(conn: Connection) -> dict[str, str]:
        since = time.time() - START_FAILURE_WINDOW_S
        latest: dict[str, tuple[str, float]] = {}
        for pool, reason, at in conn.execute(
            select(Instance.pool, Instance.reason, Instance.time_deactivated)
            .where(Instance.reason.like(f"{START_FAILURE}%"), Instance.time_deactivated > since)
            .order_by(Instance.time_deactivated)
        ):
            latest[pool] = (str(reason), at or 0.0)  # ordered: the newest failure wins
        if not latest:
            return {}
        started = dict(
            conn.execute(
                select(Instance.pool, func.max(Instance.time_activated))
                .where(Instance.pool.in_(list(latest)), Instance.time_activated > since)
                .group_by(Instance.pool)
            ).all()
        )
        return {
            pool: reason.removeprefix(START_FAILURE)
            for pool, (reason, at) in latest.items()
            if (started.get(pool) or 0.0) <= at
        }

    return await db.read(read)


async def last_start_failure(db: Database, name: str) -> str | None:
    """Why the pool's latest worker could not start, if none started since (see above)."""
    return (await last_start_failures(db)).get(name)
