"""Which workers already hold a queued job's inputs in their cache (for placement's preference).

Workers report the inputs their caches hold with their heartbeats; a job's inputs are the cloud
locations in its stored spec (batch inputs, and other jobs' outputs in this pool's scratch).
Nothing is read unless some worker of the pool holds something, so local pools pay nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from app.engine.scheduler.placement import held_input_bytes
from app.models.locations import LocationError, parse_cloud


def input_locations(files: Mapping[str, Any], batch_id: int, scratch: str | None) -> list[str]:
    """The canonical cloud locations a job reads, from its spec's ``files`` entry."""
    found = []
    for entry in files.get("in", ()):
        if "url" in entry:
            where = entry["url"]
        elif scratch:  # the same path as batches.files.scratch_location
            where = f"{scratch.rstrip('/')}/{batch_id}/{entry['job']}/{entry['key']}"
        else:
            continue
        try:
            parsed = parse_cloud(where)
        except LocationError:
            continue
        if parsed is not None:
            found.append(str(parsed))
    return found


def input_preferences(
    head: Sequence[Any],
    cached: Mapping[str, Mapping[str, int]],
    scratch: str | None,
    details: Callable[[list[Hashable]], dict[Hashable, Any]],
) -> dict[Hashable, dict[str, int]]:
    """Job key -> (instance -> bytes of its inputs that instance's cache holds)."""
    cached = {name: sizes for name, sizes in cached.items() if sizes}
    if not cached or not head:
        return {}
    rows = details([(r.batch_id, r.job_id) for r in head])
    prefer: dict[Hashable, dict[str, int]] = {}
    for key, row in rows.items():
        files = (row.spec or {}).get("files")
        if files:
            held = held_input_bytes(input_locations(files, row.batch_id, scratch), cached)
            if held:
                prefer[key] = held
    return prefer
