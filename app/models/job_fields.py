"""The fields of a DAG file: one parser per key, and problems collected by their data path.

Each parser returns the parsed value or raises ValueError with the user's message, or
FieldProblems for several problems inside one value (a `retry` mapping). The public API is
`app.models.spec`; this module is its helper.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.models.dag_text import DataPath
from app.models.field_checks import (
    ENV_NAME_RE,
    JOB_NAME_RE,
    MAX_JOB_NAME_CHARS,
    FieldProblems,
    Issue,
    Issues,
    describe,
    expected,
    parse_fields,
    unknown_key_message,
)
from app.models.files import parse_job_inputs, parse_job_outputs
from app.models.limits import MAX_COUNT
from app.models.scatter import parse_scatter
from app.models.units import parse_bytes, parse_cpu_mcpu, parse_duration_s, parse_memory

FORMAT_VERSION = 1
RETRY_REASONS = ("failure", "preemption", "oom")  # the order they are written back in
DEFAULT_MAX_RETRIES = 3
MAX_RETRIES = 100
MAX_MEMORY_FACTOR = 16
FALLBACK_AFTER_PREEMPTIONS_IF_TRUE = 2  # `fallback_to_standard: true`


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a job's attempt is retried, how many times, and what changes for the next one."""

    on: frozenset[str]  # some of RETRY_REASONS
    max_retries: int
    memory_factor: float = 1.0  # memory of the next attempt after running out of it
    fallback_after_preemptions: int | None = None  # then run on a standard (not spot) VM


# ---------------------------------------------------------------------------------------------
# Field parsers


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise expected("a string", value)
    if not value or value.isspace():
        raise ValueError("must not be empty")
    return value


def _optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    def parse_or_none(value: object) -> Any:
        return None if value is None else parse(value)

    return parse_or_none


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise expected("true or false", value)
    return value


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise expected("a whole number", value)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    if value > MAX_COUNT:
        raise ValueError(f"must be at most {MAX_COUNT:,}, got {value:,}")
    return value


def _scalar_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise expected("a string", value)


def _string_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise expected("a mapping of names to strings", value)
    result = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ValueError(f"key {key!r} must be a string")
        try:
            result[key] = _scalar_text(item)
        except ValueError as exc:
            raise ValueError(f"{key!r}: {exc}") from None
    return result


def _env(value: object) -> dict[str, str]:
    env = _string_map(value)
    for key in env:
        if not ENV_NAME_RE.fullmatch(key):
            raise ValueError(
                f"{key!r} is not a valid environment variable name: "
                "use letters, digits and '_', not starting with a digit"
            )
    return env


def _job_name(value: object) -> str:
    if not isinstance(value, str):
        raise expected("a string", value)
    if len(value) > MAX_JOB_NAME_CHARS:
        raise ValueError(f"the name has {len(value)} characters; at most 100 are allowed")
    if not JOB_NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid job name: use letters, digits, '_', '.' and '-'"
        )
    return value


def _command(value: object) -> str:
    if not isinstance(value, str):
        raise expected("a string (a bash script)", value)
    if not value or value.isspace():
        raise ValueError("the command is empty")
    return value


def _depends_on(value: object) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list):
        raise expected("a list of job names", value)
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"expected job names, got {describe(name)}")
    return tuple(names)


def _regions(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise expected("a non-empty list of region names", value)
    return tuple(_text(region) for region in value)


def _memory(value: object) -> object:
    parse_memory(value, 1000)  # the bytes depend on the job's cpu, known once defaults apply
    return value


def _not_in_defaults(value: object) -> None:
    raise ValueError("cannot be set in defaults: give it on each job")


def _version(value: object) -> int:
    if isinstance(value, bool) or value != FORMAT_VERSION:
        raise ValueError(f"unsupported version {value!r}: this LabBatch reads version 1")
    return FORMAT_VERSION


# ---------------------------------------------------------------------------------------------
# retry


def _retry(value: object) -> RetryPolicy:
    """Parse a `retry` mapping, reporting every problem inside it at once."""
    if not isinstance(value, dict):
        raise expected("a mapping like {on: [failure, oom], max: 3}", value)
    problems: list[tuple[DataPath, str]] = []
    fields: dict[str, Any] = {}
    seen: set[str] = set()
    for raw_key, item in value.items():
        key = "on" if raw_key is True else raw_key  # YAML 1.1 reads an unquoted `on` as true
        parse = _RETRY_PARSERS.get(key) if isinstance(key, str) else None
        if parse is None:
            problems.append(((key,), unknown_key_message(str(key), tuple(_RETRY_PARSERS))))
            continue
        if key in seen:
            message = f"{key!r} is given twice (YAML reads unquoted on, yes and true alike)"
            problems.append(((key,), message))
            continue
        seen.add(key)
        try:
            fields[key] = parse(item)
        except FieldProblems as exc:
            problems += [((key, *path), f"{key!r}: {message}") for path, message in exc.problems]
        except ValueError as exc:
            problems.append(((key,), f"{key!r}: {exc}"))
    if "on" not in seen:
        problems.append(((), "missing required key 'on' (failure, preemption and/or oom)"))
    reasons = fields.get("on")
    if reasons is not None and fields.get("memory_factor", 1) > 1 and "oom" not in reasons:
        problems.append((("memory_factor",), "memory_factor needs 'oom' in 'on'"))
    if problems:
        raise FieldProblems(problems)
    return RetryPolicy(
        on=fields["on"],
        max_retries=fields.get("max", DEFAULT_MAX_RETRIES),
        memory_factor=fields.get("memory_factor", 1.0),
        fallback_after_preemptions=fields.get("fallback_to_standard"),
    )


def _retry_reasons(value: object) -> frozenset[str]:
    reasons = [value] if isinstance(value, str) else value
    if not isinstance(reasons, list) or not reasons:
        raise expected("failure, preemption or oom, or a non-empty list of them", value)
    problems: list[tuple[DataPath, str]] = []
    for index, reason in enumerate(reasons):
        if reason in RETRY_REASONS:
            continue
        if isinstance(reason, str):
            close = difflib.get_close_matches(reason, RETRY_REASONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"{reason!r} is not a reason to retry{hint}: use failure, preemption or oom"
        else:
            message = f"expected failure, preemption or oom, got {describe(reason)}"
        problems.append(((index,) if isinstance(value, list) else (), message))
    if problems:
        raise FieldProblems(problems)
    return frozenset(reasons)


def _max_retries(value: object) -> int:
    max_retries = _positive_int(value)
    if max_retries > MAX_RETRIES:
        raise ValueError(f"must be at most {MAX_RETRIES}, got {max_retries}")
    return max_retries


def _memory_factor(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise expected("a number", value)
    if not 1 <= value <= MAX_MEMORY_FACTOR:  # false for nan too
        raise ValueError(f"must be from 1 to {MAX_MEMORY_FACTOR}, got {value}")
    return float(value)


def _fallback_after_preemptions(value: object) -> int | None:
    if value is None or value is False:
        return None
    if value is True:
        return FALLBACK_AFTER_PREEMPTIONS_IF_TRUE
    if not isinstance(value, int):
        raise expected("true, false or a number of preemptions", value)
    return _positive_int(value)


_RETRY_PARSERS: dict[str, Callable[[object], Any]] = {
    "on": _retry_reasons,
    "max": _max_retries,
    "memory_factor": _memory_factor,
    "fallback_to_standard": _fallback_after_preemptions,
}


def retry_to_dict(policy: RetryPolicy) -> dict[str, Any]:
    """Turn a retry policy back into a `retry` mapping of the file."""
    data: dict[str, Any] = {
        "on": [reason for reason in RETRY_REASONS if reason in policy.on],
        "max": policy.max_retries,
    }
    if policy.memory_factor != 1:
        data["memory_factor"] = whole_or_float(policy.memory_factor)
    if policy.fallback_after_preemptions is not None:
        data["fallback_to_standard"] = policy.fallback_after_preemptions
    return data


def whole_or_float(value: float) -> int | float:
    """A whole number as an int, so that the file reads `2` rather than `2.0`."""
    return int(value) if value == int(value) else value


# ---------------------------------------------------------------------------------------------
# The keys of a file

JOB_PARSERS: dict[str, Callable[[object], Any]] = {
    "name": _job_name,
    "command": _command,
    "depends_on": _depends_on,
    "image": _optional(_text),
    "env": _env,
    "cpu": parse_cpu_mcpu,
    "memory": _memory,
    "storage": parse_bytes,
    "timeout": _optional(parse_duration_s),
    "always_run": _boolean,
    "n_max_attempts": _positive_int,
    "preemptible": _boolean,
    "regions": _optional(_regions),
    "machine_type": _optional(_text),
    "pool": _optional(_text),
    "attributes": _string_map,
    "expected_duration": _optional(parse_duration_s),
    "retry": _optional(_retry),
    "scatter": _optional(parse_scatter),
    "inputs": parse_job_inputs,
    "outputs": parse_job_outputs,
}
DEFAULT_PARSERS = {
    **JOB_PARSERS,
    **dict.fromkeys(("name", "depends_on", "scatter", "inputs", "outputs"), _not_in_defaults),
}
BATCH_PARSERS: dict[str, Callable[[object], Any] | None] = {
    "version": _version,
    "name": _text,
    "attributes": _string_map,
    "billing_project": _text,
    "cancel_after_n_failures": _optional(_positive_int),
    "defaults": None,  # parsed on their own
    "jobs": None,
    "inputs": None,  # files: parsed on their own, relative to the file's directory
    "outputs": None,
    "layout": None,  # node positions of the GUI canvas, checked loosely on their own
}
# JobSpec attributes of the keys whose names differ
JOB_ATTRIBUTES = {
    "cpu": "cores_mcpu",
    "storage": "storage_bytes",
    "timeout": "timeout_s",
    "expected_duration": "expected_duration_s",
}
MERGED_FIELDS = ("env", "attributes")  # merged key by key with defaults; the rest replace them


__all__ = [
    "ENV_NAME_RE",
    "JOB_NAME_RE",
    "MAX_JOB_NAME_CHARS",
    "FieldProblems",
    "Issue",
    "Issues",
    "describe",
    "expected",
    "parse_fields",
    "unknown_key_message",
]
