"""The DAG file format (version 1): parsing and validation shared by the CLI, canvas and importers.

Every problem of a file is collected before one DagFileError is raised. The fast path builds
plain data from the parser's events and validates it without line numbers; only when there are
problems is the text read again to find the line of each one. Messages number jobs from 1
(`#3` is the third job of the file).

This module holds the results, the public functions and the checks across jobs (names,
dependencies, order); `job_fields` parses each field and `dag_text` reads the text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import gc
import heapq
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from app.errors import InvalidInputError
from app.models.dag_text import DataPath, TextSyntaxError, load_text, text_lines
from app.models.file_layout import check_layout
from app.models.files import BatchInput, BatchOutput, OutputShape, read_files
from app.models.job_fields import (
    BATCH_PARSERS,
    DEFAULT_PARSERS,
    FORMAT_VERSION,
    JOB_ATTRIBUTES,
    JOB_PARSERS,
    MERGED_FIELDS,
    Issues,
    RetryPolicy,
    describe,
    expected,
    parse_fields,
    unknown_key_message,
)
from app.models.limits import (
    MAX_DAG_FILE_BYTES,
    LimitError,
    check_limits,
    read_regular_text,
    shorten_message,
)
from app.models.scatter import Scatter, check_scatter_jobs, expand_scatter_jobs
from app.models.units import parse_memory

__all__ = [
    "FORMAT_VERSION",
    "BatchSpec",
    "DagFileError",
    "JobSpec",
    "Problem",
    "RetryPolicy",
    "Scatter",
    "load_dag_file",
    "parse_dag",
    "parse_dag_text",
    "validate_job_field",
]


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
    expected_duration_s: float | None = None  # for cost forecasts
    retry: RetryPolicy | None = None
    scatter: Scatter | None = None  # set only when parsed with expand_scatter=False
    inputs: Mapping[str, str] = field(default_factory=dict)  # local name -> reference
    outputs: Mapping[str, OutputShape] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """A validated DAG file: batch fields and jobs in a topological order (parents first)."""

    name: str
    jobs: tuple[JobSpec, ...]
    attributes: Mapping[str, str] = field(default_factory=dict)
    billing_project: str = "default"
    cancel_after_n_failures: int | None = None
    source: str = "<memory>"
    inputs: Mapping[str, BatchInput] = field(default_factory=dict)  # locations, absolute
    outputs: tuple[BatchOutput, ...] = ()


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


# Given the data paths of the problems, like ("jobs", 3, "cpu"), and all their prefixes,
# returns the 1-based lines it knows; a problem takes the line of its longest known prefix.
LineLocator = Callable[[Collection[DataPath]], Mapping[DataPath, int]]

MAX_DEPENDENCY_SUGGESTIONS = 20  # difflib over every job name is slow; suggest for a few only

_memory_of = functools.lru_cache(maxsize=1024, typed=True)(parse_memory)  # few distinct values


def validate_job_field(field: str, value: object) -> str | None:
    """Check one job field alone; return the problem's message, or None when it is valid."""
    parse = JOB_PARSERS.get(field)
    if parse is None:
        return unknown_key_message(field, tuple(JOB_PARSERS))
    try:
        parse(value)
    except ValueError as exc:
        return str(exc)
    return None


def _to_problems(issues: Issues, source: str, lines: LineLocator | None) -> list[Problem]:
    """Locate each problem on the line of its path, or of the nearest enclosing path."""
    found = issues.found
    prefixes = {issue.path[:n] for issue in found for n in range(len(issue.path) + 1)}
    located = lines(prefixes) if lines else {}
    problems = [
        Problem(
            source,
            shorten_message(issue.message),
            _nearest_line(issue.path, located),
            issue.job,
            issue.field,
        )
        for issue in found
    ]
    return sorted(problems, key=lambda problem: problem.line or 0)


def _nearest_line(path: DataPath, located: Mapping[DataPath, int]) -> int | None:
    for n in range(len(path), -1, -1):
        if path[:n] in located:
            return located[path[:n]]
    return None


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
    base_dir: str | os.PathLike[str] | None = None,
    expand_scatter: bool = True,
) -> BatchSpec:
    """Validate loaded DAG data (format version 1); `lines`, if given, locates the problems.

    Scatter jobs are expanded into their jobs unless `expand_scatter` is false; their values
    files are read relative to `base_dir` (by default the directory of `source`).
    """
    issues = Issues()
    files_dir = Path(source).parent if base_dir is None else Path(base_dir)
    with _cyclic_gc_paused():
        spec = _parse_batch(data, source, frozenset(existing_jobs), files_dir, issues)
        if spec is None:
            raise DagFileError(_to_problems(issues, source, lines))
        if expand_scatter:
            spec = dataclasses.replace(spec, jobs=expand_scatter_jobs(spec.jobs))
    return spec


def _parse_batch(
    data: object, source: str, existing: frozenset[str], files_dir: Path, issues: Issues
) -> BatchSpec | None:
    if not isinstance(data, dict):
        shape = "the file is empty" if data is None else f"got {describe(data)}"
        issues.add((), f"expected a mapping with version, name and jobs at the top level; {shape}")
        return None
    batch = parse_fields(data, (), BATCH_PARSERS, issues)
    if "version" not in data:
        issues.add((), "missing required key 'version' (add 'version: 1')", field="version")
    defaults = _parse_defaults(data.get("defaults"), issues)
    jobs = _parse_jobs(data.get("jobs"), defaults, issues)
    default_env = defaults.get("env", {})
    batch_inputs, batch_outputs = read_files(
        data, jobs, files_dir, issues, default_env=default_env, existing=existing
    )
    parents = _resolve_parents(jobs, existing, issues)
    order = _topological_order(jobs, parents, issues)
    check_scatter_jobs(jobs, base_dir=files_dir, existing=existing, issues=issues)
    if "layout" in data:
        check_layout(data["layout"], {job.name for job in jobs if job.name}, issues)
    check_limits(data, jobs, defaults, issues)
    if issues:
        return None
    return BatchSpec(
        name=batch.get("name", PurePath(source).stem),
        jobs=tuple(_build_job(jobs[position], defaults) for position in order),
        attributes=batch.get("attributes", {}),
        billing_project=batch.get("billing_project", "default"),
        cancel_after_n_failures=batch.get("cancel_after_n_failures"),
        source=source,
        inputs=batch_inputs,
        outputs=batch_outputs,
    )


def _parse_defaults(value: object, issues: Issues) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        message = str(expected("a mapping of job fields", value))
        issues.add(("defaults",), message, field="defaults")
        return {}
    return parse_fields(value, ("defaults",), DEFAULT_PARSERS, issues, rename=JOB_ATTRIBUTES)


def _parse_jobs(value: object, defaults: dict[str, Any], issues: Issues) -> list[_RawJob]:
    """Parse every job that is a mapping; report the others."""
    if not isinstance(value, list) or not value:
        if value is None:
            issues.add((), "missing required key 'jobs'", field="jobs")
        else:
            issues.add(("jobs",), str(expected("a non-empty list of jobs", value)), field="jobs")
        return []
    jobs = []
    for index, raw in enumerate(value):
        if isinstance(raw, dict):
            jobs.append(_parse_job(index, raw, defaults, issues))
        else:
            message = f"expected a job (a mapping with name and command), got {describe(raw)}"
            issues.add(("jobs", index), message, job=f"#{index + 1}")
    return jobs


def _parse_job(
    index: int, raw: dict[Any, Any], defaults: dict[str, Any], issues: Issues
) -> _RawJob:
    n_found = len(issues.found)
    path = ("jobs", index)
    fields = parse_fields(raw, path, JOB_PARSERS, issues, rename=JOB_ATTRIBUTES)
    depends_on = fields.pop("depends_on", ())
    job = _RawJob(index, fields.get("name"), raw.get("name"), fields, depends_on)
    for key in ("name", "command"):
        if key not in raw and key not in defaults:
            issues.add(path, f"missing required key {key!r}", field=key)
    issues.name_job_since(n_found, job.label)  # the label is known only once the name is parsed
    return job


def _resolve_parents(
    jobs: list[_RawJob], existing: frozenset[str], issues: Issues
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
    jobs: list[_RawJob], existing: frozenset[str], issues: Issues
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
    issues: Issues,
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


def _topological_order(jobs: list[_RawJob], parents: list[list[int]], issues: Issues) -> list[int]:
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
    jobs: list[_RawJob], parents: list[list[int]], placed: set[int], issues: Issues
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
        for key in MERGED_FIELDS:
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
    text, fmt = read_dag_text(path)
    return parse_dag_text(text, source=os.fspath(path), fmt=fmt, existing_jobs=existing_jobs)


def read_dag_text(path: str | os.PathLike[str]) -> tuple[str, str]:
    """A DAG file's text and format ("json" by its suffix, else "yaml"); DagFileError if
    it cannot be read."""
    source = os.fspath(path)
    try:
        text = read_regular_text(source, max_bytes=MAX_DAG_FILE_BYTES, what="the file")
    except UnicodeDecodeError as exc:
        raise DagFileError([Problem(source, "the file is not UTF-8 text")]) from exc
    except LimitError as exc:
        raise DagFileError([Problem(source, exc.message)]) from None
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror or exc}"
        raise DagFileError([Problem(source, message)]) from exc
    return text, "json" if PurePath(source).suffix.lower() == ".json" else "yaml"


def parse_dag_text(
    text: str,
    *,
    source: str,
    fmt: str = "yaml",
    existing_jobs: Collection[str] = (),
    base_dir: str | os.PathLike[str] | None = None,
    expand_scatter: bool = True,
) -> BatchSpec:
    """Parse and validate the text of a DAG file; `fmt` is "yaml" or "json"."""
    if fmt not in ("yaml", "json"):
        raise ValueError(f"unknown DAG file format {fmt!r}: use 'yaml' or 'json'")
    lines = functools.partial(text_lines, text)  # JSON is YAML too
    with _cyclic_gc_paused():
        try:
            data = load_text(text, fmt)
        except TextSyntaxError as exc:
            raise DagFileError([Problem(source, exc.message, exc.line)]) from exc
        return parse_dag(
            data,
            source=source,
            existing_jobs=existing_jobs,
            lines=lines,
            base_dir=base_dir,
            expand_scatter=expand_scatter,
        )


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


# ---------------------------------------------------------------------------------------------
# Back to the file format
