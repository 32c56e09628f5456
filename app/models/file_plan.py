"""The layout of a job's files in its working directory, from a validated spec.

Inputs are staged at `in/<name><ext>` (the source's suffixes), a batch input group's members at
`in/<name>.<member>`, a job output group's at its patterns with `{root}` = `in/<name>`; outputs
are written at `out/<name><ext>` or the patterns with `{root}` = `out/<name>`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from app.models.files import (
    INPUT_DIR,
    OUTPUT_DIR,
    BatchInput,
    BatchOutput,
    OutputShape,
    Resolved,
    resolve,
    source_ext,
)
from app.models.scatter import SCATTER_ATTRIBUTE


@dataclass(frozen=True, slots=True)
class StagedInput:
    """One file put in place before the command: from a location or a parent's output."""

    name: str  # the input's name, with `.member` for a group member
    local: str  # relative to the attempt's working directory
    location: str | None = None  # batch input: absolute path or URL
    job: str | None = None  # else the producing job
    key: str | None = None  # and the file's name in that job's scratch directory


@dataclass(frozen=True, slots=True)
class SavedOutput:
    """One file saved after exit 0: to the job's scratch directory (`key`) or a destination."""

    name: str
    local: str
    key: str | None = None
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class JobFiles:
    """Where a job's files are, and what the command's names for them stand for."""

    inputs: tuple[StagedInput, ...] = ()
    outputs: tuple[SavedOutput, ...] = ()
    paths: dict[str, str] = field(default_factory=dict)  # `name` / `name.member` -> local


class FileJob(Protocol):
    """What the layout reads of a job (a JobSpec)."""

    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> Mapping[str, str]: ...

    @property
    def outputs(self) -> Mapping[str, OutputShape]: ...

    @property
    def attributes(self) -> Mapping[str, str]: ...


def plan_files(
    jobs: Sequence[FileJob],
    batch_inputs: Mapping[str, BatchInput],
    batch_outputs: Sequence[BatchOutput],
) -> dict[str, JobFiles]:
    """Lay out the files of each job that has any (scatter jobs expanded), by job name."""
    planner = _Planner(jobs, batch_inputs, batch_outputs)
    return {job.name: planner.plan(job) for job in jobs if job.inputs or job.outputs}


class _Planner:
    """What laying out every job's files needs, built once per batch."""

    def __init__(
        self,
        jobs: Sequence[FileJob],
        batch_inputs: Mapping[str, BatchInput],
        batch_outputs: Sequence[BatchOutput],
    ) -> None:
        self.batch_inputs = batch_inputs
        self.jobs = {job.name: job for job in jobs}
        self.outputs = {job.name: job.outputs for job in jobs}
        self.gathers: dict[str, list[str]] = {}  # scatter job -> its jobs, in order
        for job in jobs:
            scatter = job.attributes.get(SCATTER_ATTRIBUTE)
            if scatter is not None and job.outputs:
                self.gathers.setdefault(scatter, []).append(job.name)
                self.outputs.setdefault(scatter, job.outputs)
        self.destinations: dict[str, list[str]] = {}
        for output in batch_outputs:
            self.destinations.setdefault(output.source, []).append(output.to)

    def plan(self, job: FileJob) -> JobFiles:
        """One job's layout: `in/<name><ext>`, `out/<name><ext>`, members by pattern."""
        staged: list[StagedInput] = []
        paths: dict[str, str] = {}
        for name, ref in job.inputs.items():
            found = resolve(ref, self.batch_inputs, self.outputs)
            assert isinstance(found, Resolved), found  # validated when parsed
            if found.job is None:
                self._batch_input(name, found.name, staged, paths)
            elif found.job in self.gathers:
                self._gather(name, found, staged, paths)
            else:
                self._job_output(name, f"{INPUT_DIR}/{name}", found, staged, paths)
        return JobFiles(tuple(staged), self._saved(job, paths), paths)

    def _batch_input(
        self, name: str, input_name: str, staged: list[StagedInput], paths: dict[str, str]
    ) -> None:
        root = f"{INPUT_DIR}/{name}"
        source = self.batch_inputs[input_name]
        if isinstance(source, str):
            local = root + source_ext(source)
            staged.append(StagedInput(name, local, location=source))
            paths[name] = local
            return
        paths[name] = root
        for part, location in source.items():
            local = f"{root}.{part}"
            staged.append(StagedInput(f"{name}.{part}", local, location=location))
            paths[f"{name}.{part}"] = local

    def _job_output(
        self,
        label: str,
        root: str,
        found: Resolved,
        staged: list[StagedInput],
        paths: dict[str, str] | None,
    ) -> None:
        assert found.job is not None
        shape = self.outputs[found.job][found.name]
        theirs = shape.files(found.name)
        for member, local in shape.files(root).items():
            member_label = label if member is None else f"{label}.{member}"
            staged.append(StagedInput(member_label, local, job=found.job, key=theirs[member]))
            if paths is not None:
                paths[member_label] = local
        if paths is not None and shape.members is not None:
            paths[label] = root

    def _gather(
        self, name: str, found: Resolved, staged: list[StagedInput], paths: dict[str, str]
    ) -> None:
        """A scatter job's output: a directory with one file (or group) per scatter job."""
        assert found.job is not None
        for job_name in self.gathers[found.job]:
            suffix = job_name[len(found.job) + 1 :]
            one = Resolved(job_name, found.name)
            self._job_output(f"{name}/{suffix}", f"{INPUT_DIR}/{name}/{suffix}", one, staged, None)
        paths[name] = f"{INPUT_DIR}/{name}"

    def _saved(self, job: FileJob, paths: dict[str, str]) -> tuple[SavedOutput, ...]:
        saved: list[SavedOutput] = []
        for name, shape in job.outputs.items():
            root = f"{OUTPUT_DIR}/{name}"
            keys = shape.files(name)
            if shape.members is not None:
                paths[name] = root
            destinations = self.destinations.get(f"{job.name}.{name}", ())
            for member, local in shape.files(root).items():
                label = name if member is None else f"{name}.{member}"
                saved.append(SavedOutput(label, local, key=keys[member]))
                paths[label] = local
                for to in destinations:
                    to = to if member is None else f"{to}.{member}"
                    saved.append(SavedOutput(label, local, destination=to))
        return tuple(saved)


def input_copies(
    batch_inputs: Mapping[str, BatchInput], batch_outputs: Sequence[BatchOutput]
) -> list[tuple[str, str]]:
    """(source, destination) of each batch output that copies a batch input."""
    copies = []
    for output in batch_outputs:
        source = batch_inputs.get(output.source)
        if isinstance(source, str):
            copies.append((source, output.to))
        elif source is not None:
            copies.extend((loc, f"{output.to}.{member}") for member, loc in source.items())
    return copies
