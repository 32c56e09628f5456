"""The `scatter` key of a DAG job: one job per value, expanded when the file is parsed to run.

`scatter: {sample: [a, b, c]}` (or `{i: {range: [1, 10]}}`, or `{sample: {file: samples.txt}}`)
makes the job stand for one job per value, named `<job>.<value>` (or `<job>.<index>` when a value
cannot be part of a job name), with `SAMPLE=<value>` and `LABBATCH_SCATTER_INDEX=<index>` in its
environment. Its own dependencies apply to every expansion; a job depending on it depends on all
of them. Each expansion carries the attributes `labbatch.scatter` (the job's name in the file) and
`labbatch.scatter_value`, so the engine and the GUI can group them without a schema change.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.models.field_checks import (
    ENV_NAME_RE,
    JOB_NAME_RE,
    MAX_JOB_NAME_CHARS,
    FieldProblems,
    Issues,
    describe,
    expected,
    unknown_key_message,
)
from app.models.limits import MAX_ATTRIBUTE_VALUE_CHARS, MAX_VALUES_FILE_BYTES, read_regular_text

if TYPE_CHECKING:
    from app.models.dag_text import DataPath
    from app.models.spec import JobSpec

MAX_SCATTER_JOBS = 100_000  # per scatter job
SCATTER_INDEX_ENV = "LABBATCH_SCATTER_INDEX"
SCATTER_ATTRIBUTE = "labbatch.scatter"  # the scatter job's name in the file
SCATTER_VALUE_ATTRIBUTE = "labbatch.scatter_value"
_FORMS = ("range", "file")


@dataclass(frozen=True, slots=True)
class Scatter:
    """A job's `scatter`: the values it stands for, and the form they were written in."""

    key: str  # as written: `sample`; the job sees it upper-cased
    values: tuple[str, ...]  # empty for a file until the file is read
    range: tuple[int, int, int] | None = None  # (start, end inclusive, step)
    file: str | None = None  # as written: relative to the DAG file's directory

    @property
    def env_name(self) -> str:
        """The environment variable that holds the value: the key upper-cased."""
        return self.key.upper()

    def to_data(self) -> dict[str, Any]:
        """The `scatter` value of the file, in the form it was written in."""
        form: object = list(self.values)
        if self.file is not None:
            form = {"file": self.file}
        elif self.range is not None:
            start, end, step = self.range
            form = {"range": [start, end] if step == 1 else [start, end, step]}
        return {self.key: form}


# ---------------------------------------------------------------------------------------------
# The field


def parse_scatter(value: object) -> Scatter:
    """Parse a `scatter` value; a file's values are read later, by `check_scatter_jobs`."""
    if not isinstance(value, dict):
        raise expected("a mapping of one name to its values, like {sample: [a, b]}", value)
    if len(value) != 1:
        names = ", ".join(map(str, value)) or "none"
        raise ValueError(f"give exactly one name to scatter over, got {len(value)} ({names})")
    ((key, form),) = value.items()
    if not isinstance(key, str):
        raise ValueError(f"expected a name like 'sample' to scatter over, got {describe(key)}")
    problems: list[tuple[DataPath, str]] = []
    key_problem = _key_problem(key)
    if key_problem:
        problems.append(((key,), key_problem))
    scatter = None
    try:
        scatter = _parse_form(key, form)
    except FieldProblems as exc:
        problems += [((key, *path), f"{key!r}: {message}") for path, message in exc.problems]
    except ValueError as exc:
        problems.append(((key,), f"{key!r}: {exc}"))
    if problems or scatter is None:
        raise FieldProblems(problems)
    return scatter


def _key_problem(key: str) -> str | None:
    if not ENV_NAME_RE.fullmatch(key):
        return (
            f"{key!r} cannot name an environment variable: "
            "use letters, digits and '_', not starting with a digit"
        )
    if key.upper().startswith("LABBATCH_"):
        return f"{key!r} is reserved: LabBatch sets the LABBATCH_ variables"
    return None


def _parse_form(key: str, form: object) -> Scatter:
    if isinstance(form, list):
        return Scatter(key, _list_values(form))
    if not isinstance(form, dict):
        raise expected("a list of values, {range: [start, end]} or {file: path}", form)
    if len(form) != 1 or next(iter(form)) not in _FORMS:
        unknown = [name for name in form if name not in _FORMS]
        if unknown:
            raise FieldProblems(
                [((name,), unknown_key_message(str(name), _FORMS)) for name in unknown]
            )
        raise ValueError("give either range or file, not both" if form else "give range or file")
    ((kind, item),) = form.items()
    try:
        if kind == "range":
            start, end, step = _range(item)
            values = tuple(map(str, range(start, end + (1 if step > 0 else -1), step)))
            return Scatter(key, values, range=(start, end, step))
        if not isinstance(item, str) or not item.strip():
            raise expected("a file name (a non-empty string)", item)
        return Scatter(key, (), file=item)
    except ValueError as exc:
        raise FieldProblems([((kind,), f"{kind}: {exc}")]) from None


def _list_values(values: list[Any]) -> tuple[str, ...]:
    if not values:
        raise ValueError("the list of values is empty")
    _check_count(len(values), "values")
    texts = []
    problems: list[tuple[DataPath, str]] = []
    for index, value in enumerate(values):
        text = _value_text(value)
        if text is None:
            message = f"value #{index + 1}: expected a string or a number, got {describe(value)}"
            problems.append(((index,), message))
        else:
            texts.append(text)
    if problems:
        raise FieldProblems(problems)
    _check_lengths(texts, "value #{}")
    return tuple(texts)


def _check_lengths(values: Sequence[str], where: str) -> None:
    """Each value is an attribute of its job: it has that length limit."""
    longest = max(values, key=len)
    if len(longest) > MAX_ATTRIBUTE_VALUE_CHARS:
        raise ValueError(
            f"{where.format(values.index(longest) + 1)} has {len(longest):,} characters; "
            f"a scatter value has at most {MAX_ATTRIBUTE_VALUE_CHARS:,}"
        )


def _value_text(value: object) -> str | None:
    """A scalar as the job's environment gets it (as `env` values are written); else None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _range(value: object) -> tuple[int, int, int]:
    shape = "[start, end] or [start, end, step] of whole numbers"
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise expected(shape, value)
    if any(isinstance(n, bool) or not isinstance(n, int) for n in value):
        raise ValueError(f"expected {shape}, got {value}")
    start, end, step = (*value, 1) if len(value) == 2 else value
    if step == 0:
        raise ValueError("the step must not be 0")
    n_values = len(range(start, end + (1 if step > 0 else -1), step))
    if n_values == 0:
        hint = "count down with a negative step" if end < start else "count up with a positive step"
        raise ValueError(f"{value} is empty: {hint}")
    _check_count(n_values, "values")
    return start, end, step


def _check_count(n_values: int, what: str) -> None:
    if n_values > MAX_SCATTER_JOBS:
        raise ValueError(
            f"{n_values:,} {what}; a scatter makes at most {MAX_SCATTER_JOBS:,} jobs "
            "(split it, or give each job several values to work through)"
        )


def read_values_file(scatter: Scatter, base_dir: str | os.PathLike[str]) -> Scatter:
    """The scatter with its file's values: the non-empty lines, stripped; raise ValueError."""
    if scatter.file is None:
        return scatter
    path = Path(base_dir, scatter.file)
    what = f"the values file {str(path)!r}"
    try:
        text = read_regular_text(path, max_bytes=MAX_VALUES_FILE_BYTES, what=what)
    except UnicodeDecodeError:
        raise ValueError(f"the values file {str(path)!r} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(
            f"cannot read the values file {str(path)!r}: {exc.strerror or exc}"
        ) from None
    values = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not values:
        raise ValueError(f"the values file {str(path)!r} has no values (no non-empty lines)")
    _check_count(len(values), f"lines in {str(path)!r}")
    _check_lengths(values, f"line {{}} of {str(path)!r}")
    return dataclasses.replace(scatter, values=values)


# ---------------------------------------------------------------------------------------------
# Names


def expanded_names(name: str, values: Sequence[str]) -> list[str]:
    """The jobs' names: `<name>.<value>` if every value makes a unique name, else by index."""
    by_value = [f"{name}.{value}" for value in values]
    if len(set(values)) == len(values) and all(map(_is_job_name, by_value)):
        return by_value
    return [f"{name}.{index}" for index in range(len(values))]


def _is_job_name(name: str) -> bool:
    return len(name) <= MAX_JOB_NAME_CHARS and JOB_NAME_RE.fullmatch(name) is not None


class ParsedJob(Protocol):
    """What `check_scatter_jobs` needs of a job being parsed."""

    @property
    def index(self) -> int: ...  # position in the file's job list

    @property
    def name(self) -> str | None: ...

    @property
    def label(self) -> str: ...

    @property
    def fields(self) -> dict[str, Any]: ...  # parsed fields; `scatter` is replaced once read


def check_scatter_jobs(
    jobs: Sequence[ParsedJob],
    *,
    base_dir: str | os.PathLike[str],
    existing: Collection[str],
    issues: Issues,
) -> None:
    """Read the values files of the scatter jobs and check that their jobs' names are free."""
    scattered = [job for job in jobs if job.fields.get("scatter") is not None]
    if not scattered:
        return
    owners = {job.name: job.name for job in jobs if job.name}  # a scatter job's name too
    for job in scattered:
        scatter: Scatter = job.fields["scatter"]
        path = ("jobs", job.index, "scatter", scatter.key)
        try:
            scatter = job.fields["scatter"] = read_values_file(scatter, base_dir)
        except ValueError as exc:
            issues.add((*path, "file"), str(exc), job=job.label, field="scatter")
            continue
        if job.name is not None:
            problem = _name_problem(job.name, scatter, owners, existing)
            if problem:
                issues.add(path, problem, job=job.label, field="scatter")


def _name_problem(
    name: str, scatter: Scatter, owners: dict[str, str], existing: Collection[str]
) -> str | None:
    """Say why the jobs of one scatter cannot be named; else claim their names in `owners`."""
    names = expanded_names(name, scatter.values)
    if not _is_job_name(names[-1]):
        return (
            f"its jobs' names would be too long (like {names[-1]!r}); "
            f"shorten the job's name to at most {MAX_JOB_NAME_CHARS} characters with the suffix"
        )
    taken = [job for job in names if job in owners or job in existing]
    if taken:
        first = taken[0]
        owner = owners.get(first)
        if owner is None:
            whose = "a job already in the batch"
        elif owner == first:
            whose = f"job {owner!r}"
        else:
            whose = f"a job of scatter {owner!r}"
        return f"{len(taken)} of its jobs' names are taken: {first!r} is the name of {whose}"
    owners.update(dict.fromkeys(names, name))
    return None


# ---------------------------------------------------------------------------------------------
# Expansion


def expand_scatter_jobs(jobs: Sequence[JobSpec]) -> tuple[JobSpec, ...]:
    """Replace each scatter job by its jobs; jobs must come parents first (as in a BatchSpec)."""
    if all(job.scatter is None for job in jobs):
        return tuple(jobs)
    expansions: dict[str, list[str]] = {}
    expanded: list[JobSpec] = []
    for job in jobs:
        depends_on = job.depends_on
        if any(parent in expansions for parent in depends_on):
            depends_on = tuple(
                name for parent in depends_on for name in expansions.get(parent, (parent,))
            )
        if job.scatter is None:
            expanded.append(dataclasses.replace(job, depends_on=depends_on))
            continue
        names = expansions[job.name] = expanded_names(job.name, job.scatter.values)
        expanded += (
            _expansion(job, depends_on, name, value, index)
            for index, (name, value) in enumerate(zip(names, job.scatter.values, strict=True))
        )
    return tuple(expanded)


def _expansion(
    job: JobSpec, depends_on: tuple[str, ...], name: str, value: str, index: int
) -> JobSpec:
    assert job.scatter is not None
    env = {**job.env, job.scatter.env_name: value, SCATTER_INDEX_ENV: str(index)}
    attributes = {**job.attributes, SCATTER_ATTRIBUTE: job.name, SCATTER_VALUE_ATTRIBUTE: value}
    return dataclasses.replace(
        job, name=name, depends_on=depends_on, env=env, attributes=attributes, scatter=None
    )


def job_count_text(jobs: Sequence[JobSpec]) -> str:
    """ "12 jobs", or "12 jobs (3 before scatter)" for expanded jobs, for messages."""
    nodes = {
        ("scatter", job.attributes[SCATTER_ATTRIBUTE])
        if SCATTER_ATTRIBUTE in job.attributes
        else ("job", job.name)
        for job in jobs
    }
    n_jobs = sum(len(job.scatter.values) if job.scatter else 1 for job in jobs)
    if len(nodes) == n_jobs and n_jobs == len(jobs):
        return f"{n_jobs} jobs"
    return f"{n_jobs} jobs ({len(nodes)} before scatter)"
