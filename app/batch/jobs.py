"""Jobs of a hailtop.batch-style Batch: bash jobs (`command`) and Python jobs (`call`)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from app.batch.resources import (
    PATTERN_RE,
    TOKEN_RE,
    BatchException,
    JobResourceFile,
    NotSupportedError,
    PythonResult,
    Resource,
    ResourceFile,
    ResourceGroup,
    bonded,
    check_member,
    members_of,
    new_token,
)
from app.models.spec import validate_job_field

if TYPE_CHECKING:
    from app.batch.batch import Batch


def script_line() -> int | None:
    """The line of the running script (`__main__`) that led to this call."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "__main__":
            return frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    return None


class InvalidValueError(BatchException, ValueError):
    """A job setting's value that LabBatch would refuse in a DAG file."""


def checked(field: str, value: object, *, where: str) -> object:
    """`value` if it is valid for the job field `field`; else InvalidValueError naming both."""
    message = validate_job_field(field, value)
    if message is not None:
        raise InvalidValueError(f"{where}: {field}: {message}")
    return value


class Job:
    """A job of a Batch; each setter checks its value and returns the job."""

    def __init__(
        self, batch: Batch, index: int, name: str | None, attributes: Mapping[str, str]
    ) -> None:
        self._batch = batch
        self._index = index
        self._uid = new_token("JOB")
        self.name = name
        self._fields: dict[str, Any] = {}
        self._parents: list[Job] = []
        self._lines: dict[str, int | None] = {"": script_line()}
        self._resources: dict[str, Resource] = {}  # identifier -> file or group
        self._mentioned: set[Resource] = set()  # own resources the job's code names
        self._inputs: dict[Resource, None] = {}  # other jobs' and the batch's, in order
        if attributes:
            self._set("attributes", dict(attributes))

    # -- resources ---------------------------------------------------------------------------

    def __getattr__(self, item: str) -> Resource:
        if item.startswith("_"):
            raise AttributeError(item)
        return self._get_resource(item)

    def __getitem__(self, item: str) -> Resource:
        return self._get_resource(item)

    def _get_resource(self, item: str) -> Resource:
        if item not in self._resources:
            self._new_resource_file(item)
        return self._resources[item]

    def _new_resource_file(self, value: str) -> JobResourceFile:
        file = JobResourceFile(value, self)
        self._resources[value] = file
        self._batch._resource_map[file._uid] = file
        return file

    def _use(self, resource: Resource, *, where: str) -> None:
        """Note that this job's code names `resource`: its own output, or an input."""
        resource = bonded(resource)
        source = resource.source()
        if source is self:
            self._mentioned.add(resource)
            self._mentioned.update(members_of(resource))
            return
        if source is not None and resource not in source._mentioned:
            raise BatchException(
                f"{where}: undefined resource '{_identifier(resource)}' of {source._label()}\n"
                "Hint: resources must be defined within the job methods 'command' or "
                "'declare_resource_group'"
            )
        self._inputs[resource] = None

    # -- fields ------------------------------------------------------------------------------

    def __str__(self) -> str:
        return self._uid

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._label()}>"

    def _label(self) -> str:
        return f"job {self.name!r}" if self.name else f"job #{self._index + 1}"

    def _set(self, field: str, value: object) -> Job:
        if value is None:
            self._fields.pop(field, None)
        else:
            self._fields[field] = checked(field, value, where=self._label())
        self._lines[field] = script_line()
        return self

    def depends_on(self, *jobs: Job) -> Job:
        """Run this job after `jobs` have ended."""
        for job in jobs:
            if not isinstance(job, Job) or job._batch is not self._batch:
                raise ValueError(f"{self._label()}: depends_on: {job!r} is not a job of this batch")
        self._parents += jobs
        self._lines["depends_on"] = script_line()
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
        """End the job as Error after this many seconds (on any pool)."""
        return self._set("timeout", timeout)

    def spot(self, is_spot: bool) -> Job:
        """Whether the job may run on a preemptible (spot) worker."""
        return self._set("preemptible", is_spot)

    def regions(self, regions: Sequence[str] | None) -> Job:
        """Regions the job may run in."""
        return self._set("regions", None if regions is None else list(regions))

    def n_max_attempts(self, attempts: int | None) -> Job:
        """How many attempts the job may have when its worker is lost."""
        return self._set("n_max_attempts", attempts)

    def _machine_type(self, machine_type: str | None) -> Job:
        """Run on a VM of this machine type of its own."""
        return self._set("machine_type", machine_type)

    def cloudfuse(self, *_args: Any, **_kwargs: Any) -> Job:
        """Not supported: mounting a bucket."""
        raise NotSupportedError(
            "cloudfuse (mounting a bucket in a job) is not supported by LabBatch"
        )

    gcsfuse = cloudfuse

    def always_copy_output(self, *_args: Any, **_kwargs: Any) -> Job:
        """Not supported: outputs are saved only when the job succeeds."""
        raise NotSupportedError(
            "always_copy_output is not supported by LabBatch: a job's outputs are saved when "
            "it succeeds"
        )


class BashJob(Job):
    """A bash job: `command` lines, resource files and resource groups."""

    def __init__(
        self, batch: Batch, index: int, name: str | None, attributes: Mapping[str, str]
    ) -> None:
        super().__init__(batch, index, name, attributes)
        self._commands: list[str] = []

    def command(self, command: str) -> BashJob:
        """Add a command; the job runs them in order and stops at the first that fails."""
        if not isinstance(command, str):
            raise TypeError(f"{self._label()}: command: expected a string, got {command!r}")
        for match in TOKEN_RE.finditer(command):
            self._use_token(match, command)
        self._commands.append(command)
        self._lines.setdefault("command", script_line())
        return self

    def _use_token(self, match: Any, command: str) -> None:
        kind, where = match.group(1), f"{self._label()}: command {self._readable(command)!r}"
        if kind == "JOB":
            raise BatchException(f"{where}: found a reference to a Job object")
        if kind == "BATCH":
            raise BatchException(f"{where}: found a reference to a Batch object")
        resource = self._batch._resource_map.get(match.group(0))
        if resource is None:
            raise BatchException(
                f"{where}: undefined resource '{match.group(0)}'\n"
                "Hint: resources must be from the same batch as the current job."
            )
        if isinstance(resource, PythonResult):
            raise BatchException(
                f"{where}: found a reference to a PythonResult object. hint: Use one of the "
                "methods `as_str`, `as_json` or `as_repr` on a PythonResult."
            )
        self._use(resource, where=where)

    def _readable(self, command: str) -> str:
        """The command as the script wrote it: `{name}` where a resource's token is."""

        def name(match: Any) -> str:
            resource = self._batch._resource_map.get(match.group(0))
            return match.group(0) if resource is None else "{" + _identifier(resource) + "}"

        return TOKEN_RE.sub(name, command)

    def declare_resource_group(self, **mappings: Mapping[str, str]) -> BashJob:
        """Declare groups of files sharing a root: `ofile={'bed': '{root}.bed', ...}`."""
        for name, patterns in mappings.items():
            if name in self._resources:
                raise BatchException(f"{self._label()}: resource '{name}' is already declared")
            if not isinstance(patterns, Mapping):
                raise BatchException(
                    f"value for name '{name}' is not a dict. Found '{type(patterns)}' instead."
                )
            members: dict[str, ResourceFile] = {}
            for member, pattern in patterns.items():
                if not isinstance(pattern, str):
                    raise BatchException(
                        f"value for name '{member}' is not a string. "
                        f"Found '{type(pattern)}' instead."
                    )
                where = f"{self._label()}: resource group '{name}'"
                check_member(member, where)
                if not PATTERN_RE.fullmatch(pattern):
                    raise NotSupportedError(
                        f"{where}: member {member!r} has the pattern {pattern!r}; LabBatch "
                        "takes '{root}' followed by letters, digits, '.', '_' or '-' "
                        "(like '{root}.vcf.gz')"
                    )
                file = JobResourceFile(pattern.replace("{root}", name), self)
                self._batch._resource_map[file._uid] = file
                members[member] = file
            group = ResourceGroup(self, name, members)
            group._patterns = dict(patterns)
            self._batch._resource_map[group._uid] = group
            self._resources[name] = group
            self._mentioned.add(group)
            self._mentioned.update(members.values())
        return self


class PythonJob(Job):
    """A Python job: each `call(f, *args)` runs `f` on the worker and returns a PythonResult."""

    def __init__(
        self, batch: Batch, index: int, name: str | None, attributes: Mapping[str, str]
    ) -> None:
        super().__init__(batch, index, name, attributes)
        self._calls: list[tuple[PythonResult, Callable[..., Any], tuple[Any, ...], dict]] = []

    def call(self, unapplied: Callable[..., Any], *args: Any, **kwargs: Any) -> PythonResult:
        """Run `unapplied(*args, **kwargs)` in the job; resources arrive as local paths."""
        if not callable(unapplied):
            raise BatchException(f"unapplied must be a callable function. Found {type(unapplied)}.")
        try:
            inspect.signature(unapplied).bind(*args, **kwargs)
        except ValueError:
            pass  # builtins like `print` have no signature to check
        except TypeError as exc:
            name = getattr(unapplied, "__name__", repr(unapplied))
            raise BatchException(f"Cannot call {name} with the supplied arguments: {exc}") from exc
        self._use_args((args, kwargs))
        result = PythonResult(f"result{len(self._calls) + 1}", self)
        self._batch._resource_map[result._uid] = result
        self._resources[result._value] = result
        self._mentioned.add(result)
        self._calls.append((result, unapplied, args, kwargs))
        self._lines.setdefault("command", script_line())
        return result

    def _use_args(self, value: Any) -> None:
        if isinstance(value, Job):
            raise BatchException("arguments to a PythonJob cannot be other job objects.")
        if isinstance(value, Resource):
            if isinstance(value, ResourceGroup | ResourceFile | PythonResult):
                self._use(value, where=f"{self._label()}: call")
        elif isinstance(value, list | tuple):
            for item in value:
                self._use_args(item)
        elif isinstance(value, dict):
            for item in value.values():
                self._use_args(item)


def _identifier(resource: Resource) -> str:
    return str(getattr(resource, "_value", None) or getattr(resource, "_root", "?"))
