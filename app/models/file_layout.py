"""The `layout` key of a DAG file: where the canvas draws each job, ignored by the CLI.

`layout: {<job name>: [x, y]}`. Entries for names that are not jobs of the file are ignored (a
job renamed by hand leaves its old entry behind harmlessly); a job's entry that is not two
numbers is a problem, so a typo is not silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from app.models.job_fields import Issues, describe, expected, whole_or_float

Position = tuple[float, float]


def read_layout(data: object) -> dict[str, Position]:
    """The positions in loaded DAG file data; entries that are not [x, y] numbers are skipped."""
    layout = data.get("layout") if isinstance(data, dict) else None
    if not isinstance(layout, dict):
        return {}
    return {
        name: (float(pair[0]), float(pair[1]))
        for name, pair in layout.items()
        if isinstance(name, str) and _position_problem(pair) is None
    }


def layout_to_data(positions: Mapping[str, Position]) -> dict[str, list[int | float]]:
    """The `layout` value of a file for these positions (whole numbers written as such)."""
    return {name: [whole_or_float(x), whole_or_float(y)] for name, (x, y) in positions.items()}


def check_layout(value: object, job_names: Collection[str], issues: Issues) -> None:
    """Report a `layout` that is not a mapping, and jobs' entries that are not [x, y]."""
    if value is None:
        return
    if not isinstance(value, dict):
        message = str(expected("a mapping of job names to [x, y] positions", value))
        issues.add(("layout",), message, field="layout")
        return
    for name, pair in value.items():
        if name in job_names:
            problem = _position_problem(pair)
            if problem is not None:
                issues.add(("layout", name), problem, job=name, field="layout")


def _position_problem(pair: object) -> str | None:
    if not isinstance(pair, list | tuple):
        return f"expected a position [x, y], got {describe(pair)}"
    if len(pair) != 2:
        return f"expected a position [x, y], got a list of {len(pair)} items"
    for coordinate in pair:
        if isinstance(coordinate, bool) or not isinstance(coordinate, int | float):
            return f"expected a position [x, y] of two numbers, got {describe(coordinate)}"
        if not math.isfinite(coordinate):
            return f"expected a position [x, y] of finite numbers, got {coordinate}"
    return None
