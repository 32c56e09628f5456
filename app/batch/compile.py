"""Turn a Batch's resource files into the DAG file's inputs, outputs and command paths.

Mapping (the DAG format is FILES_DESIGN.md's): `b.read_input(path)` is a batch input;
`b.read_input_group(...)` a batch input group; a job's resource that another job uses or that
`b.write_output` writes is a job output (a group: its `{root}` patterns); using another job's
resource is a job input, which makes the dependency; `b.write_output` is a batch output (a
group is written as `dest.<member>`, as Hail does). In commands a resource becomes the
worker's placeholder `{{name}}` (a group member `{{name.member}}`). A resource no other job
uses and nothing writes stays in the job: a file under `$LABBATCH_SCRATCH/hail_tmp/`.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from app.batch.jobs import BashJob, Job
from app.batch.resources import (
    TOKEN_RE,
    InputResourceFile,
    PythonResult,
    Resource,
    ResourceFile,
    ResourceGroup,
    bonded,
)

if TYPE_CHECKING:
    from app.batch.batch import Batch

MAX_NAME_CHARS = 64
PRIVATE_DIR = "${LABBATCH_SCRATCH}/hail_tmp"
_RESERVED = {"PATH", "HOME", "TMPDIR", "SHELL", "USER", "PWD"}
_NOT_NAME_RE = re.compile(r"[^A-Za-z0-9_]+")


def file_name(resource: ResourceFile | PythonResult) -> str:
    """The file's name in its job: identifier and extension."""
    return resource._value + resource._extension


class Namespace:
    """Identifiers of one scope (a job's inputs and outputs, or the batch's inputs)."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken = set(taken)

    def add(self, wanted: str) -> str:
        """`wanted` made an identifier that is not reserved or taken; the name is taken."""
        base = _NOT_NAME_RE.sub("_", wanted).strip("_") or "file"
        if base[0].isdigit():
            base = f"f_{base}"
        base = base[: MAX_NAME_CHARS - 4]
        name, n = base, 1
        while name in self._taken or name in _RESERVED or name.startswith("LABBATCH_"):
            n += 1
            name = f"{base}_{n}"
        self._taken.add(name)
        return name


class DagFiles:
    """The files of one Batch laid out in the DAG format; see the module's doc."""

    def __init__(self, batch: Batch, job_names: dict[int, str]) -> None:
        self._batch = batch
        self._job_names = job_names
        written = [bonded(resource) for resource, _dest in batch._outputs]
        self._exported: set[Resource] = {r for r in written if r.source() is not None}
        used_inputs: dict[Resource, None] = {r: None for r in written if r.source() is None}
        for job in batch._jobs:
            for resource in job._inputs:
                if resource.source() is None:
                    used_inputs[resource] = None
                else:
                    self._exported.add(resource)
        self._input_names = self._name_inputs(used_inputs)
        self._output_names: dict[Resource, str] = {}
        self._locals: dict[tuple[int, Resource], str] = {}
        spaces = {job._index: self._name_outputs(job) for job in batch._jobs}
        for job in batch._jobs:  # after every job's outputs: a job may read a later job's
            self._name_inputs_of(job, spaces[job._index])

    # -- names -------------------------------------------------------------------------------

    def _name_inputs(self, used: dict[Resource, None]) -> dict[Resource, str]:
        names = Namespace()
        ordered = [r for r in self._batch._input_resources if r in used]
        return {r: names.add(_input_stem(r)) for r in ordered}

    def _name_outputs(self, job: Job) -> Namespace:
        names = Namespace(job._fields.get("env", {}))
        for resource in job._resources.values():
            for own in _with_conversions(resource):
                if own in self._exported and own not in self._output_names:
                    self._output_names[own] = names.add(_identifier(own))
        return names

    def _name_inputs_of(self, job: Job, names: Namespace) -> None:
        for resource in job._inputs:
            source = resource.source()
            if source is None:
                wanted = self._input_names[resource]
            else:
                wanted = f"{self._job_names[source._index]}_{self._output_names[resource]}"
            self._locals[(job._index, resource)] = names.add(wanted)

    # -- the DAG's parts ---------------------------------------------------------------------

    def batch_inputs(self) -> dict[str, Any]:
        """The DAG's `inputs`: name -> location, or member -> location for a group."""
        inputs: dict[str, Any] = {}
        for resource, name in self._input_names.items():
            if isinstance(resource, ResourceGroup):
                inputs[name] = {
                    member: file._location  # type: ignore[attr-defined]
                    for member, file in resource._resources.items()
                }
            else:
                inputs[name] = resource._location  # type: ignore[attr-defined]
        return inputs

    def batch_outputs(self) -> list[dict[str, str]]:
        """The DAG's `outputs`: what `b.write_output` wrote, in call order."""
        return [{"from": self.reference(r), "to": dest} for r, dest in self._batch._outputs]

    def reference(self, resource: Resource) -> str:
        """How the DAG names a batch input or a job's output."""
        source = resource.source()
        if source is None:
            return self._input_names[resource]
        return f"{self._job_names[source._index]}.{self._output_names[resource]}"

    def job_inputs(self, job: Job) -> dict[str, str]:
        """A job's `inputs`: local name -> reference."""
        return {self._locals[(job._index, r)]: self.reference(r) for r in job._inputs}

    def job_outputs(self, job: Job) -> dict[str, Any]:
        """A job's `outputs`: name -> extension (or None), or member -> pattern for a group."""
        outputs: dict[str, Any] = {}
        for resource in job._resources.values():
            for own in _with_conversions(resource):
                name = self._output_names.get(own)
                if name is None or name in outputs:
                    continue
                if isinstance(own, ResourceGroup):
                    outputs[name] = dict(own._patterns)
                else:
                    outputs[name] = own._extension or None  # type: ignore[attr-defined]
        return outputs

    def has_private_files(self, job: Job) -> bool:
        """Whether the job names files that stay in it (they need their directory)."""
        return any(
            own in job._mentioned and bonded(own) not in self._exported
            for resource in job._resources.values()
            for own in _with_conversions(resource)
        )

    def path(self, job: Job, resource: Resource) -> str:
        """The text that stands for `resource`'s path in `job`'s command."""
        group = resource if isinstance(resource, ResourceGroup) else bonded(resource)
        member = None
        if group is not resource:
            member = next(m for m, f in group._resources.items() if f is resource)  # type: ignore[attr-defined]
        if group.source() is job:
            name = self._output_names.get(group)
            if name is None:
                return _private_path(resource)
        else:
            name = self._locals[(job._index, group)]
        return "{{" + name + ("" if member is None else f".{member}") + "}}"

    def command(self, job: BashJob) -> str:
        """The job's command: Hail's `{ ... } && { ... }` with each resource's path."""

        def substitute(match: re.Match[str]) -> str:
            resource = self._batch._resource_map.get(match.group(0))
            return match.group(0) if resource is None else self.path(job, resource)

        commands = [TOKEN_RE.sub(substitute, text).strip() for text in job._commands]
        if len(commands) == 1:
            text = commands[0]
        else:
            text = " && ".join(f"{{\n{command}\n}}" for command in commands)
        if self.has_private_files(job):
            text = f'mkdir -p "{PRIVATE_DIR}"\n{text}'
        return text


def _private_path(resource: Resource) -> str:
    if isinstance(resource, ResourceGroup):
        return f"{PRIVATE_DIR}/{resource._root}"
    return f"{PRIVATE_DIR}/{file_name(resource)}"  # type: ignore[arg-type]


def _with_conversions(resource: Resource) -> list[Resource]:
    """A resource and, for a Python result, the text files made from it."""
    if isinstance(resource, PythonResult):
        return [resource, *resource._converted.values()]
    return [resource]


def _identifier(resource: Resource) -> str:
    if isinstance(resource, ResourceGroup):
        return resource._root
    return resource._value  # type: ignore[attr-defined,no-any-return]


def _input_stem(resource: Resource) -> str:
    """A batch input's name from its file name: `data/ref.fa` -> `ref`."""
    files = (
        list(resource._resources.values()) if isinstance(resource, ResourceGroup) else [resource]
    )
    stems = {
        os.path.basename(f._location.rstrip("/")).split(".")[0]  # type: ignore[attr-defined]
        for f in files
        if isinstance(f, InputResourceFile)
    }
    return stems.pop() if len(stems) == 1 else "group"


def quote_path(text: str) -> str:
    """A path text for a shell word: placeholders and `${...}` inside double quotes."""
    return '"' + text.replace('"', '\\"') + '"' if text else shlex.quote(text)
