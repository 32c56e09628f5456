"""Hail's resource files: the files a script's jobs read and write, named before they exist.

A resource is a `str` whose text is a token (`__RESOURCE_12__`); an f-string puts the token
into a job's command, and the batch turns it into the job's local path when it builds the DAG
(see app/batch/compile.py). A resource's file name is its identifier plus any extension.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from app.errors import UserError

if TYPE_CHECKING:
    from app.batch.jobs import Job, PythonJob

TOKEN_RE = re.compile(r"__(RESOURCE|JOB|BATCH)_(\d+)__")
# what the DAG file takes (app/models/files.py): extensions, group patterns, member names
EXTENSION_RE = re.compile(r"\.[A-Za-z0-9._-]{1,31}")
PATTERN_RE = re.compile(r"\{root\}[A-Za-z0-9._-]{0,40}")
MEMBER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_counter = itertools.count(1)


def new_token(kind: str) -> str:
    """A token unique in this process: `__RESOURCE_3__`, `__JOB_4__`, `__BATCH_5__`."""
    return f"__{kind}_{next(_counter)}__"


class BatchException(UserError):
    """A misuse of the hailtop.batch API (Hail's name for it)."""

    exit_code = 2  # bad input: `labbatch run SCRIPT.py` exits with 2, as for a bad DAG file


class NotSupportedError(BatchException):
    """A hailtop.batch feature that LabBatch does not support (yet)."""


class Resource:
    """One or more files passed between jobs through the file system."""

    _uid: str

    # a resource stands in a command as its token; two resources are equal only if the same
    def __str__(self) -> str:
        return self._uid

    def __repr__(self) -> str:
        return self._uid

    def __hash__(self) -> int:
        return hash(self._uid)

    def __eq__(self, other: object) -> bool:
        return self is other

    def source(self) -> Job | None:
        """The job that writes the resource; None for a batch input."""
        raise NotImplementedError


class ResourceFile(Resource, str):
    """One file; `InputResourceFile` (a batch input) or `JobResourceFile` (a job writes it)."""

    _uid: str

    def __new__(cls, *_args: Any, **_kwargs: Any) -> ResourceFile:
        uid = new_token("RESOURCE")
        self = str.__new__(cls, uid)
        self._uid = uid
        return self

    def __init__(self, value: str) -> None:
        super().__init__()
        self._value = value  # the identifier: the file's name before any extension
        self._extension = ""
        self._group: ResourceGroup | None = None

    def source(self) -> Job | None:
        """The job that writes the file; None for a batch input."""
        return None

    def get_resource_group(self) -> ResourceGroup | None:
        """The group this file belongs to, if any."""
        return self._group


class InputResourceFile(ResourceFile):
    """A file the batch reads from a location (`b.read_input`)."""

    def __init__(self, value: str, location: str) -> None:
        super().__init__(value)
        self._location = location


class JobResourceFile(ResourceFile):
    """A file a job writes (`j.ofile`); temporary unless written with `b.write_output`."""

    def __init__(self, value: str, source: Job) -> None:
        super().__init__(value)
        self._source = source
        self._has_extension = False

    def source(self) -> Job:
        """The job that writes the file."""
        return self._source

    def add_extension(self, extension: str) -> JobResourceFile:
        """Give the file an extension (once): `j.ofile.add_extension('.vcf.gz')`."""
        if self._has_extension:
            raise BatchException("Resource already has a file extension added.")
        if not isinstance(extension, str):
            raise BatchException(f"add_extension: expected a string, got {extension!r}")
        if not EXTENSION_RE.fullmatch(extension):
            raise NotSupportedError(
                f"add_extension({extension!r}): LabBatch takes extensions of a dot and up to 31 "
                "letters, digits, '.', '_' or '-' (like '.vcf.gz')"
            )
        self._extension = extension
        self._has_extension = True
        return self


def check_member(member: str, where: str) -> None:
    """Refuse a group member name the DAG file cannot carry."""
    if not MEMBER_RE.fullmatch(member):
        raise NotSupportedError(
            f"{where}: member name {member!r}: LabBatch takes member names of letters, digits "
            "and '_' (not starting with a digit)"
        )


class ResourceGroup(Resource):
    """Files that travel together (`.bed/.bim/.fam`): `rg.bed` or `rg['bed']` is a member."""

    def __init__(self, source: Job | None, root: str, members: Mapping[str, ResourceFile]):
        self._source = source
        self._root = root  # the group's identifier
        self._uid = new_token("RESOURCE")
        self._resources: dict[str, ResourceFile] = dict(members)
        self._patterns: dict[str, str] = {}  # member -> '{root}.ext' for a job's group
        for member in self._resources.values():
            member._group = self

    def source(self) -> Job | None:
        """The job that writes the group; None for a batch input group."""
        return self._source

    def _get_resource(self, item: str) -> ResourceFile:
        if item not in self._resources:
            raise BatchException(
                f"'{item}' not found in the resource group.\n"
                "Hint: you must declare each attribute when constructing the resource group."
            )
        return self._resources[item]

    def __getitem__(self, item: str) -> ResourceFile:
        return self._get_resource(item)

    def __getattr__(self, item: str) -> ResourceFile:
        if item.startswith("_"):  # private names; such a member is still rg["_name"]
            raise AttributeError(item)
        return self._get_resource(item)

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    def __add__(self, other: str) -> str:
        return self._uid + other

    def __radd__(self, other: str) -> str:
        return other + self._uid

    def __format__(self, spec: str) -> str:
        return format(self._uid, spec)


class PythonResult(Resource, str):
    """The value a Python job's `call` returned, pickled; `as_str/as_json/as_repr` as text."""

    _uid: str

    def __new__(cls, *_args: Any, **_kwargs: Any) -> PythonResult:
        uid = new_token("RESOURCE")
        self = str.__new__(cls, uid)
        self._uid = uid
        return self

    def __init__(self, value: str, source: PythonJob) -> None:
        super().__init__()
        self._value = value
        self._extension = ""
        self._source = source
        self._converted: dict[str, JobResourceFile] = {}  # "str" | "json" | "repr"

    def source(self) -> PythonJob:
        """The Python job that computes the result."""
        return self._source

    def get_resource_group(self) -> None:
        """A result is never in a group."""
        return None

    def _convert(self, kind: str, extension: str) -> JobResourceFile:
        if kind not in self._converted:
            file = self._source._new_resource_file(f"{self._value}_{kind}")
            file.add_extension(extension)
            self._source._mentioned.add(file)
            self._converted[kind] = file
        return self._converted[kind]

    def as_str(self) -> JobResourceFile:
        """A file holding `str(result)` and a newline."""
        return self._convert("str", ".txt")

    def as_json(self) -> JobResourceFile:
        """A file holding the result as JSON and a newline."""
        return self._convert("json", ".json")

    def as_repr(self) -> JobResourceFile:
        """A file holding `repr(result)` and a newline."""
        return self._convert("repr", ".txt")


def members_of(resource: Resource) -> list[ResourceFile]:
    """The files of a resource: a group's members, or the file itself."""
    if isinstance(resource, ResourceGroup):
        return list(resource._resources.values())
    return [resource]  # type: ignore[list-item]


def bonded(resource: Resource) -> Resource:
    """What travels when `resource` is used: a member's whole group, else the resource."""
    group = resource.get_resource_group() if isinstance(resource, ResourceFile) else None
    return group if group is not None else resource
