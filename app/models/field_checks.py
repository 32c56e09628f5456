"""The small pieces every part of DAG-file checking shares: names, problems, messages."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.models.dag_text import DataPath

MAX_JOB_NAME_CHARS = 100
JOB_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class FieldProblems(ValueError):
    """Several problems inside one field's value, each at its path below the field."""

    def __init__(self, problems: list[tuple[DataPath, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


# ---------------------------------------------------------------------------------------------
# Collecting problems


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem located by its path in the data, until its line is known."""

    path: DataPath
    message: str
    job: str | None
    field: str | None


class Issues:
    """Problems found so far, in the order found."""

    def __init__(self) -> None:
        self.found: list[Issue] = []

    def __bool__(self) -> bool:
        return bool(self.found)

    def add(
        self, path: DataPath, message: str, *, job: str | None = None, field: str | None = None
    ) -> None:
        """Add one problem at `path`."""
        self.found.append(Issue(path, message, job, field))

    def name_job_since(self, start: int, job: str) -> None:
        """Name the job of the problems found since `start`."""
        if len(self.found) > start:
            self.found[start:] = [replace(issue, job=job) for issue in self.found[start:]]


def parse_fields(
    raw: dict[Any, Any],
    path: DataPath,
    parsers: Mapping[str, Callable[[object], Any] | None],
    issues: Issues,
    *,
    rename: Mapping[str, str] = {},  # read only
) -> dict[str, Any]:
    """Parse the known keys of one mapping; report unknown keys and bad values."""
    fields = {}
    for key, value in raw.items():
        if key not in parsers:
            message = unknown_key_message(str(key), tuple(parsers))
            issues.add((*path, key), message, field=str(key))
        elif (parse := parsers[key]) is not None:
            try:
                fields[rename.get(key, key)] = parse(value)
            except FieldProblems as exc:
                for subpath, message in exc.problems:
                    issues.add((*path, key, *subpath), message, field=key)
            except ValueError as exc:
                issues.add((*path, key), str(exc), field=key)
    return fields


@functools.lru_cache(maxsize=256)
def unknown_key_message(key: str, valid_keys: tuple[str, ...]) -> str:
    """Name an unknown key, with the closest valid one if any is close."""
    close = difflib.get_close_matches(key, valid_keys, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


def describe(value: object) -> str:
    """Say what a loaded value is, in the file's terms."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value) if isinstance(value, str) else type(value).__name__


def expected(what: str, value: object) -> ValueError:
    """The error for a value of the wrong kind."""
    quote = what.startswith("a string") and not isinstance(value, list | dict | type(None))
    hint = " (put it in quotes)" if quote else ""
    return ValueError(f"expected {what}, got {describe(value)}{hint}")
