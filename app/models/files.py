"""Files between jobs in the DAG file: batch inputs and outputs, job inputs and outputs.

Parsers for the `inputs` / `outputs` keys (batch and job level), the checks across jobs
(references, names, destinations) and the layout of each job's files in its working directory.
A reference is `<batch input>` or `<job name>.<output name>`; job names may contain dots, so the
longest job-name prefix that exists wins. Reading another job's output makes it a parent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from app.models.field_checks import FieldProblems, Issues, describe, expected
from app.models.locations import is_cloud, parse_cloud

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NAME_CHARS = 64
RESERVED_NAMES = frozenset({"PATH", "HOME", "TMPDIR", "SHELL", "USER", "PWD"})
EXT_RE = re.compile(r"\.[A-Za-z0-9._-]{1,31}")
PATTERN_RE = re.compile(r"\{root\}[A-Za-z0-9._-]{0,40}")
MAX_EXT_CHARS = 32
INPUT_DIR = "in"
OUTPUT_DIR = "out"


@dataclass(frozen=True, slots=True)
class OutputShape:
    """A job output: a plain file with an optional extension, or a group of files by pattern."""

    ext: str = ""
    members: Mapping[str, str] | None = None  # member -> pattern with {root}

    def files(self, root: str) -> dict[str | None, str]:
        """Member (None for a plain file) -> path, for a root like `out/vcf`."""
        if self.members is None:
            return {None: root + self.ext}
        return {m: pattern.replace("{root}", root) for m, pattern in self.members.items()}

    def to_data(self) -> object:
        """The value as written in a DAG file."""
        if self.members is not None:
            return dict(self.members)
        return self.ext or None


@dataclass(frozen=True, slots=True)
class BatchOutput:
    """Copy a job output (or group) or a batch input to a destination."""

    source: str  # a reference
    to: str  # absolute local path or URL
    index: int = field(default=0, compare=False, repr=False)  # in the file, for messages


BatchInput = str | Mapping[str, str]  # a location, or member -> location for a group


# ---------------------------------------------------------------------------------------------
# Names and locations


def check_name(value: object) -> str:
    """An input or output name: an identifier of at most 64 characters, not an env name."""
    if not isinstance(value, str):
        raise expected("a name", value)
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"name {value[:20]!r}… is too long: at most {MAX_NAME_CHARS} characters")
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid file name: use letters, digits and '_', "
            "not starting with a digit (it becomes an environment variable)"
        )
    if value in RESERVED_NAMES or value.startswith("LABBATCH_"):
        raise ValueError(f"{value!r} would shadow the job environment's ${value}: rename it")
    return value


def check_location(value: object, base_dir: Path) -> str:
    """A file location: a local path (relative to `base_dir`) or file:// URL becomes an
    absolute path; gs:// and Azure Blob URLs are checked and kept."""
    if not isinstance(value, str):
        raise expected("a location (a path or URL)", value)
    if not value.strip():
        raise ValueError("the location is empty")
    if "://" not in value:
        return os.path.abspath(base_dir / Path(value).expanduser())
    scheme = value.split("://", 1)[0].lower()
    if scheme == "file":
        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{value!r}: a file:// URL names no host (file:///abs/path)")
        return os.path.normpath(unquote(parts.path))
    if is_cloud(value):
        # one parser for cloud locations (app.models.locations); LocationError is a ValueError
        where = parse_cloud(value)
        if where is not None and not where.path:
            raise ValueError(f"{value!r} names a bucket or container, not a file in it")
        return value
    raise ValueError(
        f"{value!r}: unknown location scheme {scheme!r}; use a local path, file://, gs:// "
        "or an Azure Blob URL (https://<account>.blob.core.windows.net/..., az://)"
    )


def is_local(location: str) -> bool:
    """Whether a checked location is a local absolute path."""
    return "://" not in location


def source_ext(location: str) -> str:
    """The suffixes of a location's file name (`.vcf.gz`), kept to [A-Za-z0-9._-]."""
    path = location if is_local(location) else unquote(urlsplit(location).path)
    suffixes = "".join(PurePosixPath(path).suffixes)
    ext = re.sub(r"[^A-Za-z0-9._-]", "", suffixes)
    return ext[-MAX_EXT_CHARS:] if ext.startswith(".") else ""


# ---------------------------------------------------------------------------------------------
# Job fields


def parse_job_inputs(value: object) -> dict[str, str]:
    """A job's `inputs`: local name -> reference; a list names each by what it references."""
    if isinstance(value, list):
        value = _list_to_mapping(value)
    if not isinstance(value, dict):
        raise expected("a mapping of names to references, or a list of references", value)
    problems: list[tuple[tuple[Any, ...], str]] = []
    result: dict[str, str] = {}
    for key, ref in value.items():
        try:
            name = check_name(key)
            if not isinstance(ref, str) or not ref:
                raise expected("a reference (a batch input or <job>.<output>)", ref)
            result[name] = ref
        except ValueError as exc:
            problems.append(((key,), str(exc)))
    if problems:
        raise FieldProblems(problems)
    return result


def _list_to_mapping(refs: list[Any]) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for ref in refs:
        if not isinstance(ref, str):
            raise expected("references (a batch input or <job>.<output>)", ref)
        name = ref.rsplit(".", 1)[-1]
        if name in result:
            raise ValueError(f"two inputs would be named {name!r}: use a mapping to name them")
        result[name] = ref
    return result


def parse_job_outputs(value: object) -> dict[str, OutputShape]:
    """A job's `outputs`: name -> null, an extension like `.bam`, or a group of patterns."""
    if isinstance(value, list):
        value = dict.fromkeys(value)
    if not isinstance(value, dict):
        raise expected("a mapping of output names to extensions or groups", value)
    problems: list[tuple[tuple[Any, ...], str]] = []
    result: dict[str, OutputShape] = {}
    for key, shape in value.items():
        try:
            result[check_name(key)] = _output_shape(shape)
        except ValueError as exc:
            problems.append(((key,), f"output {key!r}: {exc}"))
    if problems:
        raise FieldProblems(problems)
    return result


def _output_shape(value: object) -> OutputShape:
    if value is None:
        return OutputShape()
    if isinstance(value, str):
        if not EXT_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an extension: use a dot and letters, digits, '.', '_', "
                "'-' (like .bam), null for none, or a group {member: '{root}.ext'}"
            )
        return OutputShape(ext=value)
    if not isinstance(value, dict) or not value:
        raise expected("null, an extension like .bam, or a group {member: pattern}", value)
    members: dict[str, str] = {}
    for member, pattern in value.items():
        check_name(member)
        if not isinstance(pattern, str) or "{root}" not in pattern:
            raise ValueError(f"member {member!r}: the pattern must contain {{root}}")
        if not PATTERN_RE.fullmatch(pattern):
            raise ValueError(
                f"member {member!r}: {pattern!r} must be {{root}} followed by letters, digits, "
                "'.', '_' or '-' (like {root}.vcf.gz)"
            )
        members[member] = pattern
    if len(set(members.values())) < len(members):
        raise ValueError("two members have the same pattern")
    return OutputShape(members=members)


# ---------------------------------------------------------------------------------------------
# Batch fields


def parse_batch_inputs(value: object, base_dir: Path, issues: Issues) -> dict[str, BatchInput]:
    """The batch `inputs`: name -> location, or name -> {member: location} for a group."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        issues.add(
            ("inputs",), str(expected("a mapping of names to locations", value)), field="inputs"
        )
        return {}
    result: dict[str, BatchInput] = {}
    for key, location in value.items():
        path = ("inputs", key)
        try:
            name = check_name(key)
            if isinstance(location, dict):
                if not location:
                    raise ValueError("a group needs at least one member")
                result[name] = {
                    check_name(member): check_location(loc, base_dir)
                    for member, loc in location.items()
                }
            else:
                result[name] = check_location(location, base_dir)
        except ValueError as exc:
            issues.add(path, f"input {key!r}: {exc}", field="inputs")
    return result


def parse_batch_outputs(value: object, base_dir: Path, issues: Issues) -> tuple[BatchOutput, ...]:
    """The batch `outputs`: a list of {from: reference, to: destination}."""
    if value is None:
        return ()
    if not isinstance(value, list):
        message = str(expected("a list of {from: <reference>, to: <destination>}", value))
        issues.add(("outputs",), message, field="outputs")
        return ()
    result = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        path = ("outputs", index)
        if not isinstance(item, dict) or set(item) != {"from", "to"}:
            message = f"expected {{from: <reference>, to: <destination>}}, got {describe(item)}"
            if isinstance(item, dict):
                message = f"expected the keys 'from' and 'to', got {sorted(map(str, item))}"
            issues.add(path, message, field="outputs")
            continue
        source = item["from"]
        try:
            if not isinstance(source, str) or not source:
                raise expected("a reference in 'from'", source)
            to = check_location(item["to"], base_dir)
        except ValueError as exc:
            issues.add(path, str(exc), field="outputs")
            continue
        if to in seen:
            message = f"destination {item['to']!r} is given twice (outputs #{seen[to] + 1} too)"
            issues.add(path, message, field="outputs")
            continue
        seen[to] = index
        result.append(BatchOutput(source, to, index))
    return tuple(result)


# ---------------------------------------------------------------------------------------------
# Checks across jobs


class RawJob(Protocol):
    """What the checks read of a parsed job (spec._RawJob)."""

    @property
    def index(self) -> int: ...

    @property
    def name(self) -> str | None: ...

    @property
    def label(self) -> str: ...

    @property
    def fields(self) -> dict[str, Any]: ...

    depends_on: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a reference names: a batch input (`job` None) or a job's output."""

    job: str | None
    name: str


def resolve(
    ref: str, inputs: Collection[str], outputs: Mapping[str, Collection[str]]
) -> Resolved | str:
    """Resolve a reference against batch inputs and jobs' outputs; a message if it fails."""
    if ref in inputs:
        return Resolved(None, ref)
    cut = len(ref)
    while (cut := ref.rfind(".", 0, cut)) > 0:
        job, name = ref[:cut], ref[cut + 1 :]
        if job in outputs:
            if name in outputs[job]:
                return Resolved(job, name)
            known = ", ".join(sorted(outputs[job])) or "none"
            return f"job {job!r} has no output {name!r} (its outputs: {known})"
    return (
        f"unknown reference {ref!r}: name a batch input or <job>.<output>"
        f" (batch inputs: {', '.join(sorted(inputs)) or 'none'})"
    )


def read_files(
    data: Mapping[Any, Any],
    jobs: Sequence[RawJob],
    base_dir: Path,
    issues: Issues,
    *,
    default_env: Mapping[str, str],
    existing: Collection[str] = (),
) -> tuple[dict[str, BatchInput], tuple[BatchOutput, ...]]:
    """The batch's inputs and outputs; each job then depends on the jobs whose files it reads.

    `existing` names the jobs of the batch's earlier updates (their files cannot be read yet).
    """
    inputs = parse_batch_inputs(data.get("inputs"), base_dir, issues)
    outputs = parse_batch_outputs(data.get("outputs"), base_dir, issues)
    if inputs or outputs or any("inputs" in j.fields or "outputs" in j.fields for j in jobs):
        link_files(jobs, inputs, outputs, issues, default_env=default_env, existing=existing)
    return inputs, outputs


def link_files(
    jobs: Sequence[RawJob],
    inputs: Mapping[str, BatchInput],
    outputs: Sequence[BatchOutput],
    issues: Issues,
    *,
    default_env: Mapping[str, str] = {},  # read only
    existing: Collection[str] = (),
) -> None:
    """Check every reference and name; make each job depend on the jobs whose files it reads."""
    job_outputs = {job.name: job.fields.get("outputs", {}) for job in jobs if job.name is not None}
    broken = {issue.path[1] for issue in issues.found if issue.path[:1] == ("jobs",)}
    for job in jobs:  # outputs that did not parse: references to them are not news
        if job.name is not None and job.index in broken and "outputs" not in job.fields:
            job_outputs[job.name] = _AnyName()
    scatter = {job.name for job in jobs if job.name and job.fields.get("scatter")}
    for job in jobs:
        _link_job(job, inputs, job_outputs, issues, default_env, existing)
    for output in outputs:
        found = resolve(output.source, inputs, job_outputs)
        message = found if isinstance(found, str) else None
        if isinstance(found, Resolved) and found.job in scatter:
            message = (
                f"{output.source!r} is an output of scatter job {found.job!r}: batch outputs "
                "of scatter jobs are not supported yet"
            )
        if message:
            issues.add(("outputs", output.index), message, field="outputs")


def _link_job(
    job: RawJob,
    inputs: Mapping[str, BatchInput],
    job_outputs: Mapping[str, Mapping[str, OutputShape]],
    issues: Issues,
    default_env: Mapping[str, str],
    existing: Collection[str],
) -> None:
    job_inputs: dict[str, str] = job.fields.get("inputs", {})
    own_outputs: Mapping[str, OutputShape] = job.fields.get("outputs", {})
    env = {**default_env, **job.fields.get("env", {})}
    parents = []
    for name, ref in job_inputs.items():
        path = ("jobs", job.index, "inputs", name)
        found = resolve(ref, inputs, job_outputs)
        if isinstance(found, str) and any(ref.startswith(f"{name}.") for name in existing):
            found = (
                f"{ref!r} is a file of a job added by an earlier update of the batch: "
                "reading those is not supported yet"
            )
        if isinstance(found, str):
            issues.add(path, found, job=job.label, field="inputs")
        elif found.job is not None and found.job == job.name:
            issues.add(
                path, f"a job cannot read its own output {ref!r}", job=job.label, field="inputs"
            )
        elif found.job is not None:
            parents.append(found.job)
        if name in own_outputs:
            message = f"{name!r} is both an input and an output of the job"
            issues.add(path, message, job=job.label, field="inputs")
    for name in (*job_inputs, *own_outputs):
        if name in env:
            kind = "input" if name in job_inputs else "output"
            message = f"{kind} {name!r} would shadow the job's env variable {name!r}: rename one"
            issues.add(
                ("jobs", job.index, kind + "s", name), message, job=job.label, field=kind + "s"
            )
    if parents:
        job.depends_on = (*job.depends_on, *parents)


class _AnyName(dict[str, OutputShape]):
    """The outputs of a job whose `outputs` did not parse: every name is taken as known."""

    def __contains__(self, key: object) -> bool:
        return True
