"""The DAG file format (version 1): parsing and validation shared by the CLI, canvas and importers.

Every problem of a file is collected before one DagFileError is raised. The fast path builds
plain data from the parser's events and validates it without line numbers; only when there are
problems is the text read again to find the line of each one. Messages number jobs from 1
(`#3` is the third job of the file).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import heapq
import json
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from app.errors import InvalidInputError
from app.models.units import (
    format_bytes,
    parse_bytes,
    parse_cpu_mcpu,
    parse_duration_s,
    parse_memory,
)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One validated job of a DAG file, with resources resolved to units."""

    name: str
    command: str
    depends_on: tuple[str, ...] = ()
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cores_mcpu: int = 1000
    memory_bytes: int = 0
    memory_class: str | None = "standard"
    storage_bytes: int = 0
    timeout_s: float | None = None
    always_run: bool = False
    n_max_attempts: int = 3
    preemptible: bool = True
    regions: tuple[str, ...] | None = None
    machine_type: str | None = None
    pool: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """A validated DAG file: batch fields and jobs in a topological order (parents first)."""

    name: str
    jobs: tuple[JobSpec, ...]
    attributes: Mapping[str, str] = field(default_factory=dict)
    billing_project: str = "default"
    cancel_after_n_failures: int | None = None
    source: str = "<memory>"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file, located as precisely as known."""

    source: str
    message: str
    line: int | None = None
    job: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        parts = [where]
        if self.job is not None:
            parts.append(f"job {self.job!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ": ".join(parts) + f": {self.message}"


class DagFileError(InvalidInputError):
    """A DAG file with one or more problems; all of them are listed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


DataPath = tuple[str | int, ...]
# Given the data paths of the problems, like ("jobs", 3, "cpu"), and all their prefixes,
# returns the 1-based lines it knows; a problem takes the line of its longest known prefix.
LineLocator = Callable[[Collection[DataPath]], Mapping[DataPath, int]]

FORMAT_VERSION = 1
MAX_JOB_NAME_CHARS = 100
JOB_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_DEPENDENCY_SUGGESTIONS = 20  # difflib over every job name is slow; suggest for a few only

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# ---------------------------------------------------------------------------------------------
# Field parsers: each returns the parsed value or raises ValueError with the user's message.


def _describe(value: object) -> str:
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


def _expected(what: str, value: object) -> ValueError:
    quote = what.startswith("a string") and not isinstance(value, list | dict | type(None))
    hint = " (put it in quotes)" if quote else ""
    return ValueError(f"expected {what}, got {_describe(value)}{hint}")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _expected("a string", value)
    if not value or value.isspace():
        raise ValueError("must not be empty")
    return value


def _optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    def parse_or_none(value: object) -> Any:
        return None if value is None else parse(value)

    return parse_or_none


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _expected("true or false", value)
    return value


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected("a whole number", value)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _scalar_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise _expected("a string", value)


def _string_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _expected("a mapping of names to strings", value)
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
        raise _expected("a string", value)
    if len(value) > MAX_JOB_NAME_CHARS:
        raise ValueError(f"the name has {len(value)} characters; at most 100 are allowed")
    if not JOB_NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid job name: use letters, digits, '_', '.' and '-'"
        )
    return value


def _command(value: object) -> str:
    if not isinstance(value, str):
        raise _expected("a string (a bash script)", value)
    if not value or value.isspace():
        raise ValueError("the command is empty")
    return value


def _depends_on(value: object) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list):
        raise _expected("a list of job names", value)
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"expected job names, got {_describe(name)}")
    return tuple(names)


def _regions(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _expected("a non-empty list of region names", value)
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


_JOB_PARSERS: dict[str, Callable[[object], Any]] = {
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
}
_DEFAULT_PARSERS = {**_JOB_PARSERS, "name": _not_in_defaults, "depends_on": _not_in_defaults}
_BATCH_PARSERS: dict[str, Callable[[object], Any] | None] = {
    "version": _version,
    "name": _text,
    "attributes": _string_map,
    "billing_project": _text,
    "cancel_after_n_failures": _optional(_positive_int),
    "defaults": None,  # parsed on their own
    "jobs": None,
    "layout": None,  # node positions of the GUI canvas; not ours
}
_JOB_ATTRIBUTES = {"cpu": "cores_mcpu", "storage": "storage_bytes", "timeout": "timeout_s"}
_MERGED_FIELDS = ("env", "attributes")
_memory_of = functools.lru_cache(maxsize=1024, typed=True)(parse_memory)  # few distinct values


@functools.lru_cache(maxsize=256)
def _unknown_key_message(key: str, valid_keys: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, valid_keys, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


def validate_job_field(field: str, value: object) -> str | None:
    """Check one job field alone; return the problem's message, or None when it is valid."""
    parse = _JOB_PARSERS.get(field)
    if parse is None:
        return _unknown_key_message(field, tuple(_JOB_PARSERS))
    try:
        parse(value)
    except ValueError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------------------------
# Collecting problems


@dataclass(frozen=True, slots=True)
class _Issue:
    path: DataPath
    message: str
    job: str | None
    field: str | None


class _Issues:
    """Problems found so far, located by their path in the data until lines are known."""

    def __init__(self) -> None:
        self.found: list[_Issue] = []

    def __bool__(self) -> bool:
        return bool(self.found)

    def add(
        self, path: DataPath, message: str, *, job: str | None = None, field: str | None = None
    ) -> None:
        self.found.append(_Issue(path, message, job, field))

    def name_job_since(self, start: int, job: str) -> None:
        """Name the job of the problems found since `start`."""
        if len(self.found) > start:
            self.found[start:] = [replace(issue, job=job) for issue in self.found[start:]]

    def to_problems(self, source: str, lines: LineLocator | None) -> list[Problem]:
        """Locate each problem on the line of its path, or of the nearest enclosing path."""
        prefixes = {issue.path[:n] for issue in self.found for n in range(len(issue.path) + 1)}
        located = lines(prefixes) if lines else {}
        problems = [
            Problem(
                source, issue.message, _nearest_line(issue.path, located), issue.job, issue.field
            )
            for issue in self.found
        ]
        return sorted(problems, key=lambda problem: problem.line or 0)


def _nearest_line(path: DataPath, located: Mapping[DataPath, int]) -> int | None:
    for n in range(len(path), -1, -1):
        if path[:n] in located:
            return located[path[:n]]
    return None


def _parse_fields(
    raw: dict[Any, Any],
    path: DataPath,
    parsers: Mapping[str, Callable[[object], Any] | None],
    issues: _Issues,
    *,
    rename: Mapping[str, str] = {},  # read only
) -> dict[str, Any]:
    """Parse the known keys of one mapping; report unknown keys and bad values."""
    fields = {}
    for key, value in raw.items():
        if key not in parsers:
            message = _unknown_key_message(str(key), tuple(parsers))
            issues.add((*path, key), message, field=str(key))
        elif (parse := parsers[key]) is not None:
            try:
                fields[rename.get(key, key)] = parse(value)
            except ValueError as exc:
                issues.add((*path, key), str(exc), field=key)
    return fields


# ---------------------------------------------------------------------------------------------
# The batch and its jobs


@dataclass(slots=True)
class _RawJob:
    index: int  # position in the file's job list
    name: str | None  # None when missing or invalid
    raw_name: object  # as written, to tell an unknown dependency from a badly named job
    fields: dict[str, Any]  # parsed, keyed by JobSpec attribute
    depends_on: tuple[str, ...]

    @property
    def label(self) -> str:
        """The job's name, or its number when it has no valid name."""
        return self.name or f"#{self.index + 1}"


def parse_dag(
    data: object,
    *,
    source: str,
    existing_jobs: Collection[str] = (),
    lines: LineLocator | None = None,
) -> BatchSpec:
    """Validate loaded DAG data (format version 1); `lines`, if given, locates the problems."""
    issues = _Issues()
    with _cyclic_gc_paused():
        spec = _parse_batch(data, source, frozenset(existing_jobs), issues)
    if spec is None:
        raise DagFileError(issues.to_problems(source, lines))
    return spec


def _parse_batch(
    data: object, source: str, existing: frozenset[str], issues: _Issues
) -> BatchSpec | None:
    if not isinstance(data, dict):
        shape = "the file is empty" if data is None else f"got {_describe(data)}"
        issues.add((), f"expected a mapping with version, name and jobs at the top level; {shape}")
        return None
    batch = _parse_fields(data, (), _BATCH_PARSERS, issues)
    if "version" not in data:
        issues.add((), "missing required key 'version' (add 'version: 1')", field="version")
    defaults = _parse_defaults(data.get("defaults"), issues)
    jobs = _parse_jobs(data.get("jobs"), defaults, issues)
    parents = _resolve_parents(jobs, existing, issues)
    order = _topological_order(jobs, parents, issues)
    if issues:
        return None
    return BatchSpec(
        name=batch.get("name", PurePath(source).stem),
        jobs=tuple(_build_job(jobs[position], defaults) for position in order),
        attributes=batch.get("attributes", {}),
        billing_project=batch.get("billing_project", "default"),
        cancel_after_n_failures=batch.get("cancel_after_n_failures"),
        source=source,
    )


def _parse_defaults(value: object, issues: _Issues) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        message = str(_expected("a mapping of job fields", value))
        issues.add(("defaults",), message, field="defaults")
        return {}
    return _parse_fields(value, ("defaults",), _DEFAULT_PARSERS, issues, rename=_JOB_ATTRIBUTES)


def _parse_jobs(value: object, defaults: dict[str, Any], issues: _Issues) -> list[_RawJob]:
    """Parse every job that is a mapping; report the others."""
    if not isinstance(value, list) or not value:
        if value is None:
            issues.add((), "missing required key 'jobs'", field="jobs")
        else:
            issues.add(("jobs",), str(_expected("a non-empty list of jobs", value)), field="jobs")
        return []
    jobs = []
    for index, raw in enumerate(value):
        if isinstance(raw, dict):
            jobs.append(_parse_job(index, raw, defaults, issues))
        else:
            message = f"expected a job (a mapping with name and command), got {_describe(raw)}"
            issues.add(("jobs", index), message, job=f"#{index + 1}")
    return jobs


def _parse_job(
    index: int, raw: dict[Any, Any], defaults: dict[str, Any], issues: _Issues
) -> _RawJob:
    n_found = len(issues.found)
    path = ("jobs", index)
    fields = _parse_fields(raw, path, _JOB_PARSERS, issues, rename=_JOB_ATTRIBUTES)
    depends_on = fields.pop("depends_on", ())
    job = _RawJob(index, fields.get("name"), raw.get("name"), fields, depends_on)
    for key in ("name", "command"):
        if key not in raw and key not in defaults:
            issues.add(path, f"missing required key {key!r}", field=key)
    issues.name_job_since(n_found, job.label)  # the label is known only once the name is parsed
    return job


def _resolve_parents(
    jobs: list[_RawJob], existing: frozenset[str], issues: _Issues
) -> list[list[int]]:
    """Map each job's dependencies to positions in `jobs`; report bad and duplicate names."""
    positions = _name_positions(jobs, existing, issues)
    parents: list[list[int]] = []
    bad: list[tuple[_RawJob, int]] = []
    for job in jobs:
        job_parents = []
        for k, dependency in enumerate(job.depends_on):
            position = positions.get(dependency)
            if position is not None and dependency != job.name:
                job_parents.append(position)
            elif position is not None or dependency not in existing:
                bad.append((job, k))
        parents.append(job_parents)
    if bad:
        _report_bad_dependencies(bad, jobs, positions, issues)
    return parents


def _name_positions(
    jobs: list[_RawJob], existing: frozenset[str], issues: _Issues
) -> dict[str, int]:
    positions: dict[str, int] = {}
    for position, job in enumerate(jobs):
        if job.name is None:
            continue
        path = ("jobs", job.index, "name")
        if job.name in existing:
            message = f"a job named {job.name!r} already exists in the batch"
            issues.add(path, message, job=job.name, field="name")
        elif job.name in positions:
            first = jobs[positions[job.name]].index + 1
            message = f"duplicate job name {job.name!r} (job #{first} has it too)"
            issues.add(path, message, job=job.name, field="name")
        else:
            positions[job.name] = position
    return positions


def _report_bad_dependencies(
    bad: list[tuple[_RawJob, int]],
    jobs: list[_RawJob],
    positions: dict[str, int],
    issues: _Issues,
) -> None:
    badly_named = {
        job.raw_name for job in jobs if job.name is None and isinstance(job.raw_name, str)
    }
    n_suggested = 0
    for job, k in bad:
        dependency = job.depends_on[k]
        if dependency == job.name:
            message = "a job cannot depend on itself"
        elif dependency in badly_named:
            continue  # that job's name is the problem, reported already
        else:
            hint = _dependency_hint(dependency, positions, n_suggested)
            n_suggested += 1
            message = f"depends on unknown job {dependency!r}{hint}"
        path = ("jobs", job.index, "depends_on", k)
        issues.add(path, message, job=job.label, field="depends_on")


def _dependency_hint(dependency: str, positions: dict[str, int], n_suggested: int) -> str:
    if n_suggested >= MAX_DEPENDENCY_SUGGESTIONS:
        return ""
    close = difflib.get_close_matches(dependency, positions.keys(), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _topological_order(jobs: list[_RawJob], parents: list[list[int]], issues: _Issues) -> list[int]:
    """Order job positions parents first, keeping file order where the graph allows it."""
    if all(parent < child for child, job_parents in enumerate(parents) for parent in job_parents):
        return list(range(len(parents)))  # the usual case: the file lists parents first
    children: list[list[int]] = [[] for _ in parents]
    for child, job_parents in enumerate(parents):
        for parent in job_parents:
            children[parent].append(child)
    n_pending = [len(job_parents) for job_parents in parents]
    ready = [position for position, n in enumerate(n_pending) if n == 0]  # sorted: a heap
    order = []
    while ready:
        position = heapq.heappop(ready)
        order.append(position)
        for child in children[position]:
            n_pending[child] -= 1
            if n_pending[child] == 0:
                heapq.heappush(ready, child)
    if len(order) < len(parents):
        _report_cycles(jobs, parents, set(order), issues)
    return order


def _report_cycles(
    jobs: list[_RawJob], parents: list[list[int]], placed: set[int], issues: _Issues
) -> None:
    import networkx as nx  # only here: importing it costs more than validating most files

    graph = nx.DiGraph()
    stuck = [position for position in range(len(parents)) if position not in placed]
    graph.add_edges_from((parent, child) for child in stuck for parent in parents[child])
    components = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    for component in sorted(components, key=min):
        edges = nx.find_cycle(graph.subgraph(component), source=min(component))
        cycle = [parent for parent, _ in edges]
        start = cycle.index(min(cycle))
        names = [jobs[position].label for position in cycle[start:] + cycle[:start]]
        issues.add(
            ("jobs", jobs[cycle[start]].index, "depends_on"),
            "cycle: " + " -> ".join([*names, names[0]]),
            job=names[0],
            field="depends_on",
        )


def _build_job(job: _RawJob, defaults: dict[str, Any]) -> JobSpec:
    kwargs = job.fields  # built once and only here, so it may be changed in place
    if defaults:
        kwargs = {**defaults, **kwargs}
        for key in _MERGED_FIELDS:
            if key in defaults and key in job.fields:
                kwargs[key] = {**defaults[key], **job.fields[key]}
    memory = kwargs.pop("memory", "standard")
    memory_bytes, memory_class = _memory_of(memory, kwargs.get("cores_mcpu", 1000))
    depends_on = job.depends_on if len(job.depends_on) < 2 else tuple(dict.fromkeys(job.depends_on))
    return JobSpec(
        **kwargs, depends_on=depends_on, memory_bytes=memory_bytes, memory_class=memory_class
    )


# ---------------------------------------------------------------------------------------------
# Text and files


def load_dag_file(
    path: str | os.PathLike[str], *, existing_jobs: Collection[str] = ()
) -> BatchSpec:
    """Read and validate a DAG file: JSON when its suffix is .json, YAML otherwise."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DagFileError([Problem(source, "the file is not UTF-8 text")]) from exc
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror or exc}"
        raise DagFileError([Problem(source, message)]) from exc
    fmt = "json" if PurePath(source).suffix.lower() == ".json" else "yaml"
    return parse_dag_text(text, source=source, fmt=fmt, existing_jobs=existing_jobs)


def parse_dag_text(
    text: str, *, source: str, fmt: str = "yaml", existing_jobs: Collection[str] = ()
) -> BatchSpec:
    """Parse and validate the text of a DAG file; `fmt` is "yaml" or "json"."""
    if fmt not in ("yaml", "json"):
        raise ValueError(f"unknown DAG file format {fmt!r}: use 'yaml' or 'json'")
    lines = functools.partial(_yaml_lines, text)  # JSON is YAML too
    with _cyclic_gc_paused():
        data = _load_json(text, source) if fmt == "json" else _load_yaml(text, source)
        return parse_dag(data, source=source, existing_jobs=existing_jobs, lines=lines)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic collector: a big file makes a million objects and no cycles, and
    collections over them would double the time of validation."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_json(text: str, source: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DagFileError([Problem(source, f"invalid JSON: {exc.msg}", exc.lineno)]) from exc


def _load_yaml(text: str, source: str) -> object:
    try:
        try:
            return _load_plain_yaml(text)
        except _NotPlainYaml:
            return yaml.load(text, Loader=_YAML_LOADER)  # a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = ": ".join(part for part in (exc.context, exc.problem) if part)
        line = mark.line + 1 if mark else None
        raise DagFileError([Problem(source, f"invalid YAML: {what}", line)]) from exc
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date like 2024-13-45
        raise DagFileError([Problem(source, f"invalid YAML: {exc}")]) from exc


# ---------------------------------------------------------------------------------------------
# YAML from parser events: PyYAML's composer and constructor make loading five times slower.


class _NotPlainYaml(Exception):
    """The text uses YAML features left to PyYAML's full loader: tags, anchors, merge keys."""


_RESOLVERS_BY_FIRST_CHAR = Resolver.yaml_implicit_resolvers
_CONSTRUCTOR = SafeConstructor()
_NULL_TAG = "tag:yaml.org,2002:null"
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float"))
_PLAIN_TAGS = (None, "!")
_NO_KEY = object()


def _load_plain_yaml(text: str) -> object:
    """Load YAML as yaml.safe_load does; raise _NotPlainYaml for what it leaves to PyYAML."""
    root: object = None
    containers: list[Any] = []  # the open mappings and sequences, innermost last
    keys: list[object] = []  # per open container: the key waiting for its value, or _NO_KEY
    n_documents = 0
    # One flat loop: this runs once per event, a million times for a 100,000-job file.
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        kind = type(event)
        if kind is ScalarEvent:
            if event.anchor is not None or event.tag not in _PLAIN_TAGS:
                raise _NotPlainYaml
            value = _plain_scalar(event.value) if event.implicit[0] else event.value
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.anchor is not None or event.tag not in _PLAIN_TAGS:
                raise _NotPlainYaml
            value = {} if kind is MappingStartEvent else []
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            containers.pop()
            keys.pop()
            continue
        elif kind is AliasEvent or (kind is DocumentStartEvent and n_documents):
            raise _NotPlainYaml  # the full loader resolves aliases and refuses a second document
        else:
            n_documents += kind is DocumentStartEvent
            continue
        if not containers:
            root = value
        elif type(containers[-1]) is list:
            containers[-1].append(value)
        elif keys[-1] is _NO_KEY:
            if type(value) is dict or type(value) is list:
                raise _NotPlainYaml  # a mapping or a list as a key
            keys[-1] = value
        else:
            containers[-1][keys[-1]] = value
            keys[-1] = _NO_KEY
        if kind is not ScalarEvent:
            containers.append(value)
            keys.append(_NO_KEY)
    return root


def _plain_scalar(value: str) -> object:
    """Resolve an untagged plain scalar as PyYAML's SafeLoader does."""
    for tag, regexp in _RESOLVERS_BY_FIRST_CHAR.get(value[:1], ()):
        if regexp.match(value):
            if tag == _NULL_TAG:
                return None
            if tag not in _SCALAR_TAGS:
                raise _NotPlainYaml  # timestamps, merge keys
            return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, value))
    return value


@dataclass(slots=True)
class _OpenNode:
    """A mapping or sequence being read, and the step to its current entry."""

    is_mapping: bool
    step: str | int = 0  # the index of the next item, or the key just read
    wants_key: bool = True


_NODE_EVENTS = (ScalarEvent, MappingStartEvent, SequenceStartEvent, AliasEvent)


def _yaml_lines(text: str, wanted: Collection[DataPath]) -> dict[DataPath, int]:
    """Find the 1-based line of each wanted data path (of its key, for a mapping entry)."""
    lines: dict[DataPath, int] = {}
    path: list[str | int] = []  # steps from the root to the innermost open node
    open_nodes: list[_OpenNode] = []
    try:
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            if isinstance(event, MappingEndEvent | SequenceEndEvent):
                open_nodes.pop()
                if open_nodes:
                    path.pop()
                continue
            if not isinstance(event, _NODE_EVENTS):
                continue
            line, step = event.start_mark.line + 1, None
            parent = open_nodes[-1] if open_nodes else None
            if parent is None:
                lines[()] = line
            elif parent.is_mapping and parent.wants_key:
                if not isinstance(event, ScalarEvent):
                    break  # a mapping or a list as a key: the lines found so far will do
                parent.step, parent.wants_key = event.value, False
                if (*path, event.value) in wanted:
                    lines[(*path, event.value)] = line
                continue
            elif parent.is_mapping:
                step, parent.wants_key = parent.step, True  # a value: its key has the line
            else:
                step, parent.step = parent.step, int(parent.step) + 1
                if (*path, step) in wanted:
                    lines[(*path, step)] = line
            if isinstance(event, MappingStartEvent | SequenceStartEvent):
                if step is not None:
                    path.append(step)
                open_nodes.append(_OpenNode(isinstance(event, MappingStartEvent)))
    except yaml.YAMLError:
        pass  # JSON that YAML does not read: no lines, which JSON problems may lack
    return lines


# ---------------------------------------------------------------------------------------------
# Back to the file format


def spec_to_dict(spec: BatchSpec) -> dict[str, Any]:
    """Turn a spec back into DAG file data (version 1) that parses to an equal spec."""
    data: dict[str, Any] = {"version": FORMAT_VERSION, "name": spec.name}
    if spec.attributes:
        data["attributes"] = dict(spec.attributes)
    if spec.billing_project != "default":
        data["billing_project"] = spec.billing_project
    if spec.cancel_after_n_failures is not None:
        data["cancel_after_n_failures"] = spec.cancel_after_n_failures
    data["jobs"] = [_job_to_dict(job) for job in spec.jobs]
    return data


def _job_to_dict(job: JobSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": job.name, "command": job.command}
    if job.depends_on:
        data["depends_on"] = list(job.depends_on)
    memory = job.memory_class or _exact_size(job.memory_bytes)
    optional_fields: tuple[tuple[str, Any, Any], ...] = (  # (key, value, default)
        ("image", job.image, None),
        ("env", dict(job.env), {}),
        ("cpu", _whole_or_float(job.cores_mcpu / 1000), 1),
        ("memory", memory, "standard"),
        ("storage", _exact_size(job.storage_bytes), 0),
        ("timeout", None if job.timeout_s is None else _whole_or_float(job.timeout_s), None),
        ("always_run", job.always_run, False),
        ("n_max_attempts", job.n_max_attempts, 3),
        ("preemptible", job.preemptible, True),
        ("regions", list(job.regions) if job.regions else None, None),
        ("machine_type", job.machine_type, None),
        ("pool", job.pool, None),
        ("attributes", dict(job.attributes), {}),
    )
    data.update((key, value) for key, value, default in optional_fields if value != default)
    return data


def _exact_size(size_bytes: int) -> str | int:
    text = format_bytes(size_bytes)
    return text if text.endswith("i") and parse_bytes(text) == size_bytes else size_bytes


def _whole_or_float(value: float) -> int | float:
    return int(value) if value == int(value) else value
