"""What to say when no zone of a pool offers its machine type: the nearest types there are."""

from __future__ import annotations

import re
from collections.abc import Iterable

from app.clouds.gcp.resources import MachineType
from app.errors import CloudError

SIMILAR_LIMIT = 6
_CORES = re.compile(r"-(\d+)$")


def _cores_of(name: str) -> int | None:
    match = _CORES.search(name)
    return int(match.group(1)) if match else None


def similar_machine_types(
    wanted: str, offered: Iterable[MachineType], *, limit: int = SIMILAR_LIMIT
) -> list[str]:
    """Names of the offered types nearest ``wanted``: the same series (n2-standard), then the
    same family (n2), then the same cores; nearest in cores first. Listed group by group, each
    by series and cores."""
    series, family, cores = wanted.rsplit("-", 1)[0], wanted.split("-", 1)[0], _cores_of(wanted)
    unique = {m.name: m for m in offered if m.name != wanted}

    def rank(m: MachineType) -> tuple[int, int, str]:
        if m.name.rsplit("-", 1)[0] == series:
            tier = 0
        elif m.name.split("-", 1)[0] == family:
            tier = 1
        elif m.cores == cores:
            tier = 2
        else:
            tier = 3
        return tier, abs(m.cores - cores) if cores is not None else 0, m.name

    nearest = sorted(unique.values(), key=rank)[:limit]
    nearest.sort(key=lambda m: (rank(m)[0], m.name.rsplit("-", 1)[0], m.cores))
    return [m.name for m in nearest]


def not_offered_error(
    pool: str, machine_type: str, zones: Iterable[str], offered: Iterable[MachineType]
) -> CloudError:
    """The lasting error for a machine type that none of the pool's zones offers."""
    similar = similar_machine_types(machine_type, offered)
    there = f"; similar types there: {', '.join(similar)}" if similar else ""
    return CloudError(
        f"pool {pool}: machine type {machine_type} is not offered in zones "
        f"{', '.join(zones)}{there} (`labbatch pool offers {pool}` lists them)",
        transient=False,
    )
