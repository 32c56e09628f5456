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


def plan_job_files(
    job: FileJob,
    batch_inputs: Mapping[str, BatchInput],
    batch_outputs: Sequence[BatchOutput],
    jobs: Mapping[str, FileJob],
) -> JobFiles:
    """Lay out one job's files: `in/<name><ext>`, `out/<name><ext>`, group members by pattern."""
    outputs_by_job = {name: j.outputs for name, j in jobs.items()}
    staged: list[StagedInput] = []
    paths: dict[str, str] = {}
    for name, ref in job.inputs.items():
        found = resolve(ref, batch_inputs, outputs_by_job)
        assert isinstance(found, Resolved), found  # validated when parsed
        root = f"{INPUT_DIR}/{name}"
        if found.job is None:
            source = batch_inputs[found.name]
            if isinstance(source, str):
                local = root + source_ext(source)
                staged.append(StagedInput(name, local, location=source))
                paths[name] = local
                continue
            paths[name] = root
            for part, location in source.items():
                local = f"{root}.{part}"
                staged.append(StagedInput(f"{name}.{part}", local, location=location))
                paths[f"{name}.{part}"] = local
            continue
        shape = jobs[found.job].outputs[found.name]
        theirs = shape.files(found.name)
        for member, local in shape.files(root).items():
            label = name if member is None else f"{name}.{member}"
            staged.append(StagedInput(label, local, job=found.job, key=theirs[member]))
            paths[label] = local
        if shape.members is not None:
            paths[name] = root
    saved: list[SavedOutput] = []
    for name, shape in job.outputs.items():
        root = f"{OUTPUT_DIR}/{name}"
        keys = shape.files(name)
        if shape.members is not None:
            paths[name] = root
        for member, local in shape.files(root).items():
            label = name if member is None else f"{name}.{member}"
            saved.append(SavedOutput(label, local, key=keys[member]))
            paths[label] = local
            for output in batch_outputs:
                if output.source == f"{job.name}.{name}":
                    to = output.to if member is None else f"{output.to}.{member}"
                    saved.append(SavedOutput(label, local, destination=to))
    return JobFiles(tuple(staged), tuple(saved), paths)


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
