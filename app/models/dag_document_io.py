"""A DAG document as file data and text: the same YAML/JSON the CLI runs, plus its `layout`.

Writing is stable: keys in a fixed order, positions rounded to whole scene units, so saving,
opening and saving again gives the same text. Reading refuses only what a canvas cannot show
(no job list, unknown or duplicate names behind dependencies, a cycle), with every problem
located by line; bad field values open fine and show up in `DagDocument.validate()`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import yaml

from app.errors import UserError
from app.models.dag_parts import Edge, Position
from app.models.dag_text import DataPath, TextSyntaxError, load_json
from app.models.dag_yaml import load_yaml, yaml_lines
from app.models.job_fields import BATCH_PARSERS, FORMAT_VERSION, JOB_PARSERS, describe
from app.models.spec import DagFileError, Problem, read_dag_text

if TYPE_CHECKING:
    from app.models.dag_document import DagDocument

BATCH_KEY_ORDER = ("version", "name", "billing_project", "cancel_after_n_failures", "attributes")
JOB_KEY_ORDER = (
    "name",
    "depends_on",
    "image",
    "scatter",
    "cpu",
    "memory",
    "storage",
    "timeout",
    "env",
    "always_run",
    "n_max_attempts",
    "preemptible",
    "retry",
    "regions",
    "machine_type",
    "pool",
    "attributes",
    "expected_duration",
)  # then any other key, and `command` last: it is often a multi-line script
LAYOUT_KEY = "layout"
AFTER_JOBS = frozenset({"outputs"})  # batch keys written after the jobs, as people write them


# ---------------------------------------------------------------------------------------------
# Document → data → text


def to_data(
    document: DagDocument, *, layout: bool = True, for_validation: bool = False
) -> dict[str, Any]:
    """The file data of a document; nested values are shared with it, so do not change them.

    `for_validation` leaves out the keys the file format does not know yet (`scatter`).
    """
    batch = document.batch
    data: dict[str, Any] = {"version": batch.get("version", FORMAT_VERSION)}
    data.update((key, batch[key]) for key in BATCH_KEY_ORDER if key in batch and key not in data)
    data.update(
        (key, value) for key, value in batch.items() if key not in data and key not in AFTER_JOBS
    )
    skipped = {"scatter"} if for_validation and "scatter" not in JOB_PARSERS else set()
    names = {node_id: document.name(node_id) for node_id in document.node_ids}
    data["jobs"] = [
        _job_data(document.fields(n), [names[p] for p in document.parents(n)], skipped)
        for n in names
    ]
    data.update((key, batch[key]) for key in AFTER_JOBS if key in batch)
    if layout:
        positions = document.positions
        data[LAYOUT_KEY] = {
            name: [round(positions[n][0]), round(positions[n][1])]
            for n, name in names.items()
            if name
        }
    if for_validation and LAYOUT_KEY not in BATCH_PARSERS:
        data.pop(LAYOUT_KEY, None)
    return data


def _job_data(
    fields: Mapping[str, Any], parent_names: list[str], skipped: Collection[str]
) -> dict[str, Any]:
    job: dict[str, Any] = {}
    for key in JOB_KEY_ORDER:
        if key == "depends_on":
            if parent_names:
                job["depends_on"] = parent_names
        elif key in fields and key not in skipped:
            job[key] = fields[key]
    for key, value in fields.items():
        if key not in job and key != "command" and key not in skipped:
            job[key] = value
    if "command" in fields:
        job["command"] = fields["command"]
    return job


class _FlowList(list[Any]):
    """A list of scalars, written on one line: `[a, b]`."""


class _FlowDict(dict[Any, Any]):
    """A mapping of scalars, written on one line: `{SAMPLE: a}`."""


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Writes multi-line strings as literal blocks and never uses anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_flow_list(dumper: yaml.SafeDumper, value: _FlowList) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


def _represent_flow_dict(dumper: yaml.SafeDumper, value: _FlowDict) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=True)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_FlowList, _represent_flow_list)
_Dumper.add_representer(_FlowDict, _represent_flow_dict)


def _is_scalar(value: object) -> bool:
    return not isinstance(value, list | dict)


def _flowing(value: Any) -> Any:
    """The value with every list or mapping of scalars marked to be written on one line."""
    if isinstance(value, list):
        if all(_is_scalar(item) and not _is_multiline(item) for item in value):
            return _FlowList(value)
        return [_flowing(item) for item in value]
    if isinstance(value, dict):
        if all(_is_scalar(item) and not _is_multiline(item) for item in value.values()):
            return _FlowDict(value)
        return {key: _flowing(item) for key, item in value.items()}
    return value


def _is_multiline(value: object) -> bool:
    return isinstance(value, str) and "\n" in value


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while making many objects that hold no cycles (a large
    DAG's data, or its scene items): collections over them would double the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def dump_text(data: Mapping[str, Any], *, fmt: str = "yaml") -> str:
    """File data as YAML (or JSON) text, keys in the data's order."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    shaped: dict[str, Any] = {}
    for key, value in data.items():
        if key == "jobs":
            shaped[key] = [{k: _flowing(v) for k, v in job.items()} for job in value]
        else:
            shaped[key] = _flowing(value)
    text: str = yaml.dump(
        shaped, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )
    return text


def save_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a file whole or not at all (a temp file renamed over it)."""
    target = Path(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                out.write(text)
            os.replace(temp, target)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError as exc:
        raise UserError(f"cannot save {target}: {exc.strerror or exc}") from exc


def file_format(path: str | os.PathLike[str]) -> str:
    """'json' for a .json file, else 'yaml'."""
    return "json" if PurePath(path).suffix.lower() == ".json" else "yaml"


# ---------------------------------------------------------------------------------------------
# Text → data → document parts


def read_text(path: str | os.PathLike[str]) -> tuple[object, str]:
    """Load a DAG file's data and text; raise DagFileError (with the line) when unreadable."""
    source = os.fspath(path)
    text, fmt = read_dag_text(source)
    try:
        data = load_json(text) if fmt == "json" else load_yaml(text)
    except TextSyntaxError as exc:
        raise DagFileError([Problem(source, exc.message, exc.line)]) from exc
    return data, text


@dataclass(slots=True)
class DagParts:
    """What a document is built from: batch fields, jobs, positions where known, edges."""

    batch: dict[str, Any]
    jobs: list[dict[str, Any]]  # job fields without depends_on, in file order
    positions: list[Position | None]
    edges: list[Edge] = field(default_factory=list)  # by index in `jobs`


@dataclass(slots=True)
class _Found:
    problems: list[tuple[DataPath, str, str | None, str | None]] = field(default_factory=list)

    def add(
        self, path: DataPath, message: str, job: str | None = None, field: str | None = None
    ) -> None:
        self.problems.append((path, message, job, field))


def read_parts(data: object, *, source: str, text: str | None = None) -> DagParts:
    """Split file data into document parts; raise DagFileError listing what a canvas cannot
    show (located by line when `text` is given)."""
    found = _Found()
    if not isinstance(data, dict):
        shape = "the file is empty" if data is None else f"got {describe(data)}"
        found.add((), f"expected a mapping with version, name and jobs at the top level; {shape}")
        raise _error(found, source, text)
    jobs_data = data.get("jobs") or []
    if not isinstance(jobs_data, list):
        found.add(("jobs",), f"expected a list of jobs, got {describe(jobs_data)}", field="jobs")
        jobs_data = []
    batch = {k: v for k, v in data.items() if k not in ("jobs", LAYOUT_KEY)}
    jobs: list[dict[str, Any]] = []
    depends: list[list[str]] = []
    for index, raw in enumerate(jobs_data):
        if not isinstance(raw, dict):
            message = f"expected a job (a mapping with name and command), got {describe(raw)}"
            found.add(("jobs", index), message, job=f"#{index + 1}")
            raw = {}
        fields = dict(raw)
        depends.append(_dependency_names(fields.pop("depends_on", None), index, fields, found))
        jobs.append(fields)
    edges = _edges(jobs, depends, found)
    if not found.problems:
        _check_acyclic(jobs, edges, found)
    if found.problems:
        raise _error(found, source, text)
    layout = data.get(LAYOUT_KEY)
    positions = [_position_in(layout, job.get("name")) for job in jobs]
    return DagParts(batch, jobs, positions, edges)


def _label(fields: Mapping[str, Any], index: int) -> str:
    name = fields.get("name")
    return name if isinstance(name, str) and name else f"#{index + 1}"


def _dependency_names(
    value: object, index: int, fields: dict[str, Any], found: _Found
) -> list[str]:
    names = [value] if isinstance(value, str) else [] if value is None else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        message = f"expected a list of job names, got {describe(value)}"
        found.add(("jobs", index, "depends_on"), message, _label(fields, index), "depends_on")
        return []
    return list(dict.fromkeys(names))


def _edges(jobs: list[dict[str, Any]], depends: list[list[str]], found: _Found) -> list[Edge]:
    position: dict[str, int] = {}
    for index, fields in enumerate(jobs):
        name = fields.get("name")
        if not isinstance(name, str):
            continue
        if name in position:
            message = f"duplicate job name {name!r} (job #{position[name] + 1} has it too)"
            found.add(("jobs", index, "name"), message, name, "name")
        else:
            position[name] = index
    edges: list[Edge] = []
    for child, names in enumerate(depends):
        label = _label(jobs[child], child)
        for k, name in enumerate(names):
            path = ("jobs", child, "depends_on", k)
            parent = position.get(name)
            if parent == child:
                found.add(path, "a job cannot depend on itself", label, "depends_on")
            elif parent is None:
                found.add(path, f"depends on unknown job {name!r}", label, "depends_on")
            else:
                edges.append((parent, child))
    return edges


def _check_acyclic(jobs: list[dict[str, Any]], edges: list[Edge], found: _Found) -> None:
    if all(parent < child for parent, child in edges):
        return  # the usual case: the file lists parents first
    children: list[list[int]] = [[] for _ in jobs]
    n_pending = [0] * len(jobs)
    for parent, child in edges:
        children[parent].append(child)
        n_pending[child] += 1
    ready = [k for k, n in enumerate(n_pending) if n == 0]
    n_placed = 0
    while ready:
        n_placed += 1
        for child in children[ready.pop()]:
            n_pending[child] -= 1
            if n_pending[child] == 0:
                ready.append(child)
    if n_placed == len(jobs):
        return
    import networkx as nx  # only here: importing it costs more than reading most files

    stuck = [(p, c) for p, c in edges if n_pending[p] and n_pending[c]]
    cycle = nx.find_cycle(nx.DiGraph(stuck))
    order = [parent for parent, _ in cycle]
    start = order.index(min(order))  # from the first job of the file, as the CLI says it
    order = order[start:] + order[:start]
    names = [_label(jobs[k], k) for k in order]
    found.add(
        ("jobs", order[0], "depends_on"),
        "cycle: " + " -> ".join([*names, names[0]]),
        names[0],
        "depends_on",
    )


def _position_in(layout: object, name: object) -> Position | None:
    if not isinstance(layout, dict) or not isinstance(name, str):
        return None
    value = layout.get(name)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return (float(value[0]), float(value[1]))
    return None


def _error(found: _Found, source: str, text: str | None) -> DagFileError:
    paths = {path[:n] for path, *_ in found.problems for n in range(len(path) + 1)}
    lines = yaml_lines(text, paths) if text is not None else {}
    problems = []
    for path, message, job, field_name in found.problems:
        line = next((lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines), None)
        problems.append(Problem(source, message, line, job, field_name))
    return DagFileError(sorted(problems, key=lambda p: p.line or 0))
