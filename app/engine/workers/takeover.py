"""A lease takeover by a driver with another master key must not re-run finished work.

Worker tokens derive from the master key of the driver that started the worker. A driver with
another key gets 401 from those workers; declaring them lost would re-run attempts that are
still running or already done. So each instance records which key its token came from (a
fingerprint, see secrets.key_check), and a driver refuses to take the lease over while a
worker started under another key still answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from app.engine.secrets import KEY_ENV, key_check
from app.engine.workers.connection import pinned, worker_url
from app.engine.workers.instances import live_instances, tls_pin
from app.errors import ConfigError
from app.models.db import Database
from app.protocol import HEALTH_PATH

KEY_CHECK = "key_check"  # the key of Instance.handle that holds the fingerprint
PROBE_TIMEOUT_S = 3.0


class TakeoverRefusedError(ConfigError):
    """Live workers were started by a driver whose master key this process does not have."""


def stamp(handle: dict[str, Any]) -> dict[str, Any]:
    """An instance's handle with the fingerprint of the key its token derives from."""
    return handle | {KEY_CHECK: key_check()}


async def check_keys(db: Database, pools: Sequence[str]) -> None:
    """Raise TakeoverRefusedError if a live worker of ``pools`` has another key's token."""
    mine = key_check()
    rows = await db.run(lambda conn: live_instances(conn, list(pools)))
    foreign = [
        row
        for row in rows
        if (row.handle or {}).get(KEY_CHECK, mine) != mine and row.address is not None
    ]
    alive = await asyncio.gather(*(_answers(row.address, tls_pin(row.handle)) for row in foreign))
    names = [row.name for row, up in zip(foreign, alive, strict=True) if up]
    if names:
        raise TakeoverRefusedError(
            f"not taking over the driver: worker(s) {', '.join(sorted(names))} were started by "
            "a driver with another secret key, and this one cannot talk to them (it would run "
            f"their jobs a second time). Give every machine that drives this database the same "
            f"key: set ${KEY_ENV}, or copy secret.key from the data dir of the last driver."
        )


async def _answers(address: str, tls_sha256: str | None) -> bool:
    """Whether a LabBatch worker answers at ``address`` (its health page needs no token)."""
    import aiohttp  # only when another driver's workers are found: its import is heavy

    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    url = worker_url(address, HEALTH_PATH, tls_sha256)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, ssl=pinned(tls_sha256)) as response,
        ):
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return False
    return response.status == 200 and isinstance(body, dict) and "version" in body
