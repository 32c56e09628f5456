"""A hailtop.batch-style API: a Python script builds a LabBatch DAG, then imports or runs it.

    import app.batch as hb            # `import hailtop.batch as hb` works under `labbatch import`
    b = hb.Batch(name="align")
    index = b.new_job(name="index").cpu(2).memory("4Gi")
    index.command("echo indexing")
    b.new_job(name="report").depends_on(index).always_run().command("echo done")
    b.run()

`run()` under `labbatch import` (or the canvas's import) writes the DAG for the importer and
runs nothing. Run on its own (`python script.py`), it validates the DAG and runs it as
`labbatch run` does, in a child process on the local pool, printing its report; it raises
BatchFailedError when the batch does not succeed. Setters check their value at once, so a bad
value fails at the line that set it. Hail resource files (`j.ofile`, `b.read_input`) are not
supported yet: jobs share files through `$LABBATCH_BATCH_DIR` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from app.errors import UserError
from app.models.importers.hail_script import (
    ENVELOPE_FORMAT,
    IMPORT_OUTPUT_ENV,
    dag_from_envelope,
    python_path,
)
from app.models.importers.result import renamed_note, unique_job_name
from app.models.job_fields import FORMAT_VERSION
from app.models.spec import validate_job_field

__all__ = [
    "Batch",
    "BatchFailedError",
    "Job",
    "LocalBackend",
    "NotSupportedError",
    "ServiceBackend",
]

_RESOURCE_HINT = (
    "Hail resource files (j.ofile, b.read_input, b.write_output) are not supported by LabBatch "
    "yet; write and read files under $LABBATCH_BATCH_DIR, which the batch's jobs share"
)


class NotSupportedError(UserError):
    """A hailtop.batch feature that LabBatch does not support (yet)."""


class ResourceFileError(NotSupportedError, AttributeError):
    """`j.ofile`: a Hail resource file."""


class BatchFailedError(UserError):
    """The batch that `Batch.run()` ran did not succeed."""


class ServiceBackend:
    """Accepted for hailtop.batch scripts: its billing project becomes the batch's."""

    def __init__(self, billing_project: str | None = None, **_ignored: Any) -> None:
        self.billing_project = billing_project


class LocalBackend(ServiceBackend):
    """Accepted for hailtop.batch scripts; LabBatch runs on its own pool either way."""


def _script_line() -> int | None:
    """The line of the running script (`__main__`) that led to this call."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "__main__":
            return frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _checked(field: str, value: object, *, where: str) -> object:
    message = validate_job_field(field, value)
    if message is not None:
        raise ValueError(f"{where}: {field}: {message}")
    return value


class Job:
    """A bash job of a Batch; each setter checks its value and returns the job."""

    __slots__ = ("_batch", "_commands", "_fields", "_index", "_lines", "_parents", "name")

    def __init__(
        self, batch: Batch, index: int, name: str | None, attributes: Mapping[str, str]
    ) -> None:
        self._batch = batch
        self._index = index
        self.name = name
        self._fields: dict[str, Any] = {}
        self._commands: list[str] = []
        self._parents: list[Job] = []
        self._lines: dict[str, int | None] = {"": _script_line()}
        if attributes:
            self._set("attributes", dict(attributes))

    def __getattr__(self, item: str) -> NoReturn:
        if item.startswith("__"):
            raise AttributeError(item)
        raise ResourceFileError(f"{self._label()}: j.{item}: {_RESOURCE_HINT}")

    def __repr__(self) -> str:
        return f"<Job {self._label()}>"

    def _label(self) -> str:
        return f"job {self.name!r}" if self.name else f"job #{self._index + 1}"

    def _set(self, field: str, value: object) -> Job:
        if value is None:
            self._fields.pop(field, None)
        else:
            self._fields[field] = _checked(field, value, where=self._label())
        self._lines[field] = _script_line()
        return self

    def command(self, command: str) -> Job:
        """Add a line to the job's bash script (each call adds one, as in hailtop)."""
        if not isinstance(command, str):
            raise TypeError(f"{self._label()}: command: expected a string, got {command!r}")
        self._commands.append(command)
        self._lines.setdefault("command", _script_line())
        return self

    def depends_on(self, *jobs: Job) -> Job:
        """Run this job after `jobs` have ended."""
        for job in jobs:
            if not isinstance(job, Job) or job._batch is not self._batch:
                raise ValueError(f"{self._label()}: depends_on: {job!r} is not a job of this batch")
        self._parents += jobs
        self._lines["depends_on"] = _script_line()
        return self

    def cpu(self, cores: int | float | str | None) -> Job:
        """Cores: 0.25, 0.5, 1, 2 … or millicores like '500m'."""
        return self._set("cpu", cores)

    def memory(self, memory: int | str | None) -> Job:
        """Bytes, a size like '4Gi', or 'lowmem', 'standard', 'highmem'."""
        return self._set("memory", memory)

    def storage(self, storage: int | str | None) -> Job:
        """Scratch disk: bytes or a size like '10Gi'."""
        return self._set("storage", storage)

    def image(self, image: str | None) -> Job:
        """Run the command in this container image."""
        return self._set("image", image)

    def env(self, variable: str, value: object) -> Job:
        """Set an environment variable of the job."""
        env = {**self._fields.get("env", {}), variable: value}
        return self._set("env", env)

    def always_run(self, always_run: bool = True) -> Job:
        """Run even when a parent did not succeed (clean-up steps)."""
        return self._set("always_run", always_run)

    def timeout(self, timeout: float | int | str | None) -> Job:
        """End the job as Error after this many seconds."""
        return self._set("timeout", timeout)

    def spot(self, is_spot: bool) -> Job:
        """Whether the job may run on a preemptible (spot) worker."""
        return self._set("preemptible", is_spot)

    def regions(self, regions: Sequence[str] | None) -> Job:
        """Regions the job may run in."""
        return self._set("regions", None if regions is None else list(regions))

    def _data(self, name: str, names: Mapping[int, str]) -> dict[str, Any]:
        data: dict[str, Any] = {"name": name}
        if self._parents:
            data["depends_on"] = list(dict.fromkeys(names[job._index] for job in self._parents))
        data.update(self._fields)
        if self._commands:
            data["command"] = "\n".join(self._commands)
        return data


class Batch:
    """A DAG of jobs; `run()` imports or runs it (see the module's doc)."""

    def __init__(
        self,
        name: str | None = None,
        backend: ServiceBackend | None = None,
        *,
        attributes: Mapping[str, str] | None = None,
        billing_project: str | None = None,
        default_image: str | None = None,
        default_memory: int | str | None = None,
        default_cpu: int | float | str | None = None,
        default_storage: int | str | None = None,
        default_regions: Sequence[str] | None = None,
        default_timeout: float | int | None = None,
        default_spot: bool | None = None,
        default_shell: str | None = None,
        cancel_after_n_failures: int | None = None,
        requester_pays_project: str | None = None,  # these three: of no use to LabBatch
        default_python_image: str | None = None,
        project: str | None = None,
    ) -> None:
        self.name = name
        self._jobs: list[Job] = []
        self._batch_fields: dict[str, Any] = {}
        if attributes:
            self._batch_fields["attributes"] = dict(attributes)
        billing_project = billing_project or getattr(backend, "billing_project", None)
        if billing_project:
            self._batch_fields["billing_project"] = billing_project
        if cancel_after_n_failures is not None:
            self._batch_fields["cancel_after_n_failures"] = cancel_after_n_failures
        _check_shell(default_shell)
        defaults = {
            "image": default_image,
            "memory": default_memory,
            "cpu": default_cpu,
            "storage": default_storage,
            "regions": None if default_regions is None else list(default_regions),
            "timeout": default_timeout,
            "preemptible": default_spot,
        }
        self._defaults = {
            key: _checked(key, value, where="Batch defaults")
            for key, value in defaults.items()
            if value is not None
        }

    def new_job(
        self,
        name: str | None = None,
        attributes: Mapping[str, str] | None = None,
        shell: str | None = None,
    ) -> Job:
        """A new bash job; unnamed jobs are called job-1, job-2 … by their position."""
        _check_shell(shell)
        job = Job(self, len(self._jobs), name, attributes or {})
        self._jobs.append(job)
        return job

    new_bash_job = new_job

    def new_python_job(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        """Not supported: wrap the Python in a bash command (`python3 -c …` or a script)."""
        raise NotSupportedError("new_python_job is not supported by LabBatch yet: " + _PY_HINT)

    def read_input(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        """Not supported: Hail resource files."""
        raise NotSupportedError(f"read_input: {_RESOURCE_HINT}")

    read_input_group = read_input

    def write_output(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        """Not supported: Hail resource files."""
        raise NotSupportedError(f"write_output: {_RESOURCE_HINT}")

    def run(
        self,
        dry_run: bool = False,
        verbose: bool = False,
        *,
        wait: bool = True,
        open: bool = False,  # these three: of no use to LabBatch
        disable_progress_bar: bool = False,
        delete_scratch_on_exit: bool = True,
    ) -> None:
        """Import (under `labbatch import`) or validate and run the batch; see the module."""
        envelope = self._envelope()
        output = os.environ.get(IMPORT_OUTPUT_ENV)
        if output:
            _write_envelope(Path(output), envelope)
            return
        if not wait:
            raise NotSupportedError(
                "run(wait=False) is not supported: `labbatch import` the script, then "
                "`labbatch submit` the DAG file for `labbatch serve` or the desktop app to run"
            )
        main = sys.modules.get("__main__")
        imported = dag_from_envelope(envelope, source=getattr(main, "__file__", "<script>"))
        for note in imported.notes:
            print(f"labbatch: {note}", file=sys.stderr)
        if dry_run:
            print(imported.to_yaml(), end="")
            return
        with tempfile.TemporaryDirectory(prefix="labbatch-batch-") as tmp:
            dag_file = Path(tmp, "batch.yaml")
            dag_file.write_text(imported.to_yaml(), encoding="utf-8")
            command = [sys.executable, "-m", "app", "run", str(dag_file)]
            env = {**os.environ, "PYTHONPATH": python_path()}
            if verbose:
                command.append("--verbose")
            exit_code = subprocess.call(command, env=env)
        if exit_code != 0:
            error = BatchFailedError(
                f"batch {imported.spec.name!r} did not succeed (`labbatch run` exited with "
                f"{exit_code}; its report is above)"
            )
            error.exit_code = exit_code
            raise error

    def _envelope(self) -> dict[str, Any]:
        """The DAG file data, each job's script lines and the renames, for the importer."""
        taken: set[str] = set()
        names: dict[int, str] = {}
        notes: list[str] = []
        for job in self._jobs:  # named jobs first, so that job-N never takes a given name
            if job.name is not None:
                names[job._index] = unique_job_name(str(job.name), taken)
                if names[job._index] != job.name:
                    notes.append(renamed_note(str(job.name), names[job._index]))
        for job in self._jobs:
            if job.name is None:
                names[job._index] = unique_job_name(f"job-{job._index + 1}", taken)
        dag: dict[str, Any] = {"version": FORMAT_VERSION}
        if self.name is not None:
            dag["name"] = self.name
        dag.update(self._batch_fields)
        if self._defaults:
            dag["defaults"] = self._defaults
        dag["jobs"] = [job._data(names[job._index], names) for job in self._jobs]
        lines = {
            str(job._index): {field: line for field, line in job._lines.items() if line}
            for job in self._jobs
        }
        return {"format": ENVELOPE_FORMAT, "dag": dag, "lines": lines, "notes": notes}


_PY_HINT = "run Python from a bash job instead, e.g. j.command('python3 step.py')"


def _check_shell(shell: str | None) -> None:
    if shell is not None and Path(shell).name != "bash":
        raise NotSupportedError(f"shell {shell!r}: LabBatch runs job commands with bash")


def _write_envelope(output: Path, envelope: dict[str, Any]) -> None:
    if output.exists() and output.stat().st_size:
        raise NotSupportedError("the script runs more than one batch; an import takes one")
    output.write_text(json.dumps(envelope), encoding="utf-8")
