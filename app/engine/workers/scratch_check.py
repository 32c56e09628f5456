"""Check a cloud pool's scratch location against the cloud before it is stored."""

from __future__ import annotations

from app.clouds.base import ScratchCheck
from app.clouds.storage import STORAGE_OF_CLOUD, make_storage
from app.engine.workers.pools import PoolConfig, with_cloud_defaults
from app.errors import ConfigError


async def check_scratch(pool: PoolConfig) -> ScratchCheck | None:
    """Ask the pool's cloud whether its scratch location exists and is writable (None for
    pools with nothing to ask: local ones, or no scratch location yet).

    Raises ConfigError naming the pool when the location cannot be used; the warnings
    (another region: egress billed) are for the caller to show.
    """
    scratch = pool.scratch
    if pool.cloud not in STORAGE_OF_CLOUD or not scratch:
        return None
    pool = with_cloud_defaults(pool)
    pool.check()  # the location's form first: no need to ask the cloud about a malformed one
    storage = make_storage(pool.cloud, pool.config)
    region = pool.regions[0] if pool.regions else None
    result = await storage.check_scratch(scratch, region=region)
    if not result.ok:
        raise ConfigError(
            f"pool {pool.name}: scratch {pool.scratch}: " + "; ".join(result.problems)
        )
    return result
