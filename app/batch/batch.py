"""The Batch of the hailtop.batch-style API (see app/batch/__init__.py): jobs, files, run()."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app.batch.compile import DagFiles
from app.batch.jobs import BashJob, Job, PythonJob, checked
from app.batch.python_jobs import python_command
from app.batch.resources import (
    BatchException,
    InputResourceFile,
    NotSupportedError,
    PythonResult,
    Resource,
    ResourceFile,
    ResourceGroup,
    check_member,
    new_token,
)
from app.errors import UserError
from app.models.importers.hail_script import (
    ENVELOPE_FORMAT,
    IMPORT_OUTPUT_ENV,
    RUN_OPTIONS_ENV,
    dag_from_envelope,
    python_path,
)
from app.models.importers.result import renamed_note, unique_job_name
from app.models.job_fields import FORMAT_VERSION

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class BatchFailedError(UserError):
    """The batch that `Batch.run()` ran did not succeed."""


class ServiceBackend:
    """Accepted for hailtop.batch scripts: its billing project becomes the batch's."""

    def __init__(self, billing_project: str | None = None, **_ignored: Any) -> None:
        self.billing_project = billing_project


class LocalBackend(ServiceBackend):
    """Accepted for hailtop.batch scripts; LabBatch runs on its own pool either way."""


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
        self._uid = new_token("BATCH")
        self._jobs: list[Job] = []
        self._resource_map: dict[str, Resource] = {}
        self._input_resources: list[Resource] = []  # files and groups, in creation order
        self._outputs: list[tuple[Resource, str]] = []  # write_output: resource, destination
        self._python_image = default_python_image
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
            key: checked(key, value, where="Batch defaults")
            for key, value in defaults.items()
            if value is not None
        }

    def __str__(self) -> str:
        return self._uid

    @classmethod
    def from_batch_id(cls, *_args: Any, **_kwargs: Any) -> Batch:
        """Not supported: adding jobs to a batch that was submitted."""
        raise NotSupportedError("Batch.from_batch_id (adding jobs to a submitted batch)")

    def new_job(
        self,
        name: str | None = None,
        attributes: Mapping[str, str] | None = None,
        shell: str | None = None,
    ) -> BashJob:
        """A new bash job; unnamed jobs are called job-1, job-2 … by their position."""
        _check_shell(shell)
        job = BashJob(self, len(self._jobs), name, attributes or {})
        self._jobs.append(job)
        return job

    new_bash_job = new_job

    def new_python_job(
        self, name: str | None = None, attributes: Mapping[str, str] | None = None
    ) -> PythonJob:
        """A new Python job: `call(f, *args)` runs `f` in it and returns a PythonResult."""
        job = PythonJob(self, len(self._jobs), name, attributes or {})
        if self._python_image is not None:
            job.image(self._python_image)
        self._jobs.append(job)
        return job

    def read_input(self, path: str) -> InputResourceFile:
        """A file the jobs read: a local path (relative to the current directory) or a URL."""
        file = InputResourceFile("input", _location(path, "read_input"))
        self._resource_map[file._uid] = file
        self._input_resources.append(file)
        return file

    def read_input_group(self, **members: str) -> ResourceGroup:
        """Files read together, each staged as `<root>.<member>`: `bed=..., bim=..., fam=...`."""
        if not members:
            raise BatchException("read_input_group: give at least one member=path")
        files: dict[str, ResourceFile] = {}
        for member, path in members.items():
            check_member(member, "read_input_group")
            file = InputResourceFile(member, _location(path, "read_input_group"))
            self._resource_map[file._uid] = file
            files[member] = file
        group = ResourceGroup(None, "input", files)
        self._resource_map[group._uid] = group
        self._input_resources.append(group)
        return group

    def write_output(self, resource: Resource, dest: str) -> None:
        """Copy a file (or a group, as `dest.<member>`) to `dest` when its job succeeds."""
        if not isinstance(resource, Resource):
            raise BatchException(
                f"'write_output' only accepts Resource inputs. Found '{type(resource)}'."
            )
        if self._resource_map.get(resource._uid) is not resource:
            raise BatchException("write_output: the resource is not from this batch")
        source = resource.source()
        if source is not None and resource not in source._mentioned:
            how = "bound as a result using the PythonJob 'call' method"
            if not isinstance(resource, PythonResult):
                how = "defined within the job methods 'command' or 'declare_resource_group'"
            name = getattr(resource, "_value", None) or getattr(resource, "_root", "?")
            raise BatchException(
                f"write_output: undefined resource '{name}' of {source._label()}\n"
                f"Hint: resources must be {how}"
            )
        if isinstance(resource, ResourceFile) and resource.get_resource_group() is not None:
            raise NotSupportedError(
                "write_output of one member of a resource group: write the whole group "
                "(each member goes to dest.<member>)"
            )
        if not isinstance(dest, str) or not dest:
            raise BatchException(f"write_output: the destination must be a path, not {dest!r}")
        self._outputs.append((resource, _location(dest, "write_output")))

    def select_jobs(self, pattern: str) -> list[Job]:
        """The jobs whose name matches the regular expression `pattern` (at its start)."""
        return [j for j in self._jobs if j.name is not None and re.match(pattern, j.name)]

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
            command = [sys.executable, "-m", "app", "run", str(dag_file), *_run_options()]
            env = {**os.environ, "PYTHONPATH": python_path()}
            env.pop(RUN_OPTIONS_ENV, None)  # they are on the command line; jobs inherit env
            if verbose and "--verbose" not in command:
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
        files = DagFiles(self, names)
        if inputs := files.batch_inputs():
            dag["inputs"] = inputs
        dag["jobs"] = [_job_data(job, names, files) for job in self._jobs]
        if outputs := files.batch_outputs():
            dag["outputs"] = outputs
        lines = {
            str(job._index): {field: line for field, line in job._lines.items() if line}
            for job in self._jobs
        }
        return {"format": ENVELOPE_FORMAT, "dag": dag, "lines": lines, "notes": notes}


def _job_data(job: Job, names: dict[int, str], files: DagFiles) -> dict[str, Any]:
    """A job of the DAG file: its fields, files and command."""
    data: dict[str, Any] = {"name": names[job._index]}
    if job._parents:
        data["depends_on"] = list(dict.fromkeys(names[parent._index] for parent in job._parents))
    if inputs := files.job_inputs(job):
        data["inputs"] = inputs
    if outputs := files.job_outputs(job):
        data["outputs"] = outputs
    data.update(job._fields)
    if isinstance(job, PythonJob):
        if job._calls:
            data["command"] = python_command(job, files)
    elif isinstance(job, BashJob):
        # Hail runs a job without commands as a no-op (a gather point of depends_on)
        data["command"] = files.command(job) if job._commands else "true"
    return data


def show_user_errors_plainly() -> None:
    """Under `labbatch run SCRIPT.py`: a LabBatch error ends the script with its message and
    the script's line, not a traceback (other exceptions keep theirs)."""
    if RUN_OPTIONS_ENV not in os.environ:
        return
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        if not isinstance(error, UserError):
            previous(kind, error, tb)
            return
        problems = getattr(error, "problems", None)  # a DagFileError: each at its own line
        if problems:
            for problem in problems:
                print(problem, file=sys.stderr)
            raise SystemExit(getattr(error, "exit_code", 2))
        main = os.path.abspath(getattr(sys.modules.get("__main__"), "__file__", "") or "-")
        lines = [f.lineno for f in traceback.extract_tb(tb) if os.path.abspath(f.filename) == main]
        where = f"{os.path.basename(main)}:{lines[-1]}: " if lines else ""
        print(f"labbatch: {where}{kind.__name__}: {error}", file=sys.stderr)
        raise SystemExit(getattr(error, "exit_code", 1))

    sys.excepthook = hook


def _run_options() -> list[str]:
    """The options of the `labbatch run SCRIPT.py` that runs this script, if one does."""
    options = json.loads(os.environ.get(RUN_OPTIONS_ENV) or "[]")
    return [str(option) for option in options]


def _location(path: str, where: str) -> str:
    """A URL as it is; a local path made absolute from the current directory, as Hail does."""
    if not isinstance(path, str) or not path:
        raise BatchException(f"{where}: expected a path, got {path!r}")
    if _URL_RE.match(path):
        return path
    return os.path.abspath(os.path.expanduser(path))


def _check_shell(shell: str | None) -> None:
    if shell is not None and Path(shell).name != "bash":
        raise NotSupportedError(f"shell {shell!r}: LabBatch runs job commands with bash")


def _write_envelope(output: Path, envelope: dict[str, Any]) -> None:
    if output.exists() and output.stat().st_size:
        raise NotSupportedError("the script runs more than one batch; an import takes one")
    output.write_text(json.dumps(envelope), encoding="utf-8")
