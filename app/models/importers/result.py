"""What every importer returns, and the steps they share: validation, job names, YAML text.

An importer builds plain DAG file data (the dict a YAML DAG file loads to) and hands it to
`finish_import`, which validates it with the shared rules of `app.models.spec`; problems are
located at the lines the importer knows, and nothing is returned unless the whole DAG is valid.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.models.dag_text import DataPath
from app.models.job_fields import MAX_JOB_NAME_CHARS
from app.models.spec import BatchSpec, DagFileError, LineLocator, Problem, parse_dag
from app.models.spec_data import spec_to_dict

_NOT_NAME_CHARS_RE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class ImportedDag:
    """A valid DAG read from a file: plain DAG file data, its spec, and where it came from."""

    data: dict[str, Any]  # {version: 1, name, jobs: [...]}, as a YAML DAG file loads
    spec: BatchSpec
    source: str  # the imported file, as given
    kind: str  # "hail-script", "graphml", "dot", "yaml" or "json"
    notes: tuple[str, ...] = ()  # what the import changed, e.g. renamed jobs
    # jobs drawn without a command (a graph): `data` has none for them, `spec` a stand-in;
    # validation refuses the DAG until each has one, so it is a draft for the canvas
    missing_commands: tuple[str, ...] = ()

    def to_yaml(self, *, header: str | None = None) -> str:
        """The DAG as YAML DAG file text, jobs parents first, with `header` as a comment."""
        return dag_to_yaml(
            self.data if self.missing_commands else file_data(self.spec), header=header
        )


def finish_import(
    data: dict[str, Any],
    *,
    source: str,
    kind: str,
    lines: LineLocator | Mapping[DataPath, int] | None = None,
    notes: Iterable[str] = (),
    commands_later: bool = False,
) -> ImportedDag:
    """Validate built DAG data as the CLI does; raise DagFileError listing every problem.

    Scatter jobs stay one job each, as drawn; a values file is relative to the source's folder.
    With ``commands_later`` (a drawn graph), jobs without a command are no problem here: the
    rest is validated and the result says which jobs still need one.
    """
    locate = _locator(lines) if isinstance(lines, Mapping) else lines
    missing: tuple[str, ...] = ()
    if commands_later:
        jobs = data.get("jobs")
        if isinstance(jobs, list):
            missing = tuple(
                str(job.get("name"))
                for job in jobs
                if isinstance(job, dict) and "command" not in job
            )
    if missing:
        stand_in = {**data, "jobs": [_with_command(job) for job in data["jobs"]]}
        try:
            spec = parse_dag(stand_in, source=source, lines=locate, expand_scatter=False)
        except DagFileError:  # other problems: list them all, the missing commands too
            parse_dag(data, source=source, lines=locate, expand_scatter=False)
            raise
        draft = file_data(spec)
        for job in draft["jobs"]:
            if job["name"] in missing:
                del job["command"]
        notes = [*notes, _missing_note(missing)]
        return ImportedDag(draft, spec, source, kind, tuple(notes), missing)
    spec = parse_dag(data, source=source, lines=locate, expand_scatter=False)
    return ImportedDag(file_data(spec), spec, source, kind, tuple(notes))


def _with_command(job: object) -> object:
    """A job with a stand-in command where it has none (to validate the rest of it)."""
    if isinstance(job, dict) and "command" not in job:
        return {**job, "command": "true"}
    return job


def _missing_note(names: tuple[str, ...]) -> str:
    shown = ", ".join(repr(n) for n in names[:5]) + (" …" if len(names) > 5 else "")
    n = len(names)
    return (
        f"{n} job{'s have' if n != 1 else ' has'} no command yet ({shown}): fill "
        f"{'them' if n != 1 else 'it'} in (in the canvas or the file) before submitting"
    )


def read_text(source: str) -> str:
    """The text of a file to import; raise DagFileError when it cannot be read."""
    try:
        return Path(source).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DagFileError([Problem(source, "the file is not UTF-8 text")]) from exc
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror or exc}"
        raise DagFileError([Problem(source, message)]) from exc


def _locator(known: Mapping[DataPath, int]) -> LineLocator:
    def locate(wanted: Collection[DataPath]) -> Mapping[DataPath, int]:
        return {path: known[path] for path in wanted if path in known}

    return locate


def unique_job_name(wanted: str, taken: set[str]) -> str:
    """A valid job name close to `wanted` and not in `taken` (which it joins)."""
    base = _NOT_NAME_CHARS_RE.sub("-", wanted).strip("-") or "job"
    base = base[:MAX_JOB_NAME_CHARS]
    name, n = base, 1
    while name in taken:
        n += 1
        suffix = f"-{n}"
        name = base[: MAX_JOB_NAME_CHARS - len(suffix)] + suffix
    taken.add(name)
    return name


def renamed_note(original: str, name: str) -> str:
    """Say that a job was renamed, and why."""
    return (
        f"job {original!r} is named {name!r}: job names are unique and use letters, digits, "
        "'_', '.' and '-'"
    )


# ---------------------------------------------------------------------------------------------
# Back to text

_FIRST_KEYS = ("name", "depends_on")
_LAST_KEYS = ("command",)  # often a multi-line script: easiest to read last


def file_data(spec: BatchSpec) -> dict[str, Any]:
    """DAG file data of a spec, each job's keys in the usual order: name, depends_on … command."""
    data = spec_to_dict(spec)
    data["jobs"] = [_ordered(job) for job in data["jobs"]]
    return data


def _ordered(job: dict[str, Any]) -> dict[str, Any]:
    middle = [key for key in job if key not in _FIRST_KEYS and key not in _LAST_KEYS]
    return {key: job[key] for key in (*_FIRST_KEYS, *middle, *_LAST_KEYS) if key in job}


class _BlockMapping(dict[str, Any]):
    """A mapping always written in block style (the file and its jobs)."""


class _DagDumper(yaml.SafeDumper):
    """Block style for the file and its jobs, flow style for short lists and maps, `|` scripts."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # `jobs:` items indented, as in examples/


def _is_flat(values: Iterable[object]) -> bool:
    return all(
        value is None
        or isinstance(value, bool | int | float)
        or (isinstance(value, str) and "\n" not in value)
        for value in values
    )


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_dict(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.Node:
    flow = not isinstance(value, _BlockMapping) and _is_flat(value.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=_is_flat(value))


_DagDumper.add_representer(str, _represent_str)
_DagDumper.add_representer(dict, _represent_dict)
_DagDumper.add_representer(_BlockMapping, _represent_dict)
_DagDumper.add_representer(list, _represent_list)


def dag_to_yaml(data: Mapping[str, Any], *, header: str | None = None) -> str:
    """Readable YAML text of DAG file data (as in examples/), with `header` as a comment."""
    document = _BlockMapping(data)
    if isinstance(data.get("jobs"), list):
        document["jobs"] = [_BlockMapping(job) for job in data["jobs"]]
    text = yaml.dump(
        document, Dumper=_DagDumper, sort_keys=False, allow_unicode=True, width=1_000_000
    )
    if header is None:
        return text
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + text
