"""Limits that keep a hostile DAG file from costing unbounded time, memory or storage.

A file is refused (exit 2, with a message) rather than read when it breaks one of them:
- files: the DAG file and scatter values files must be regular files under a size cap (not
  /dev/zero, a FIFO or a 1 GB file);
- text: nesting depth, the length of one number and of one string, duplicate keys (YAML and
  JSON would keep the last one silently: a reviewer reads one `command`, the job runs another);
- values: names, attribute values, environment values and commands have length limits;
  whole numbers fit the database;
- the expanded DAG: its jobs, dependencies and stored text are counted before a scatter is
  expanded, from the values' counts, so a cross product of two large scatters costs nothing.

The loaders (`dag_text`, `dag_yaml`) and the validator (`spec`) call in here; this module imports
nothing else of LabBatch, so all can, and no PyYAML, which a JSON file does without.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MIB = 1024 * 1024
MAX_DAG_FILE_BYTES = 128 * MIB  # a 100,000-job file is about 6 MB
MAX_VALUES_FILE_BYTES = 32 * MIB
MAX_NESTING = 64  # the format itself nests 6 deep
MAX_NUMBER_CHARS = 40  # of one number as written
MAX_WHOLE_NUMBER = 2**53  # any whole number (a JSON reader's safe integers)
MAX_COUNT = 2**31 - 1  # counts like n_max_attempts: what the database's integers hold
MAX_SIZE_BYTES = 2**60  # sizes (memory, storage): one exbibyte
MAX_STRING_CHARS = 1 * MIB  # any one string (a command script is the longest)
MAX_NAME_CHARS = 100  # a pool, machine type, billing project, attribute or env key
MAX_BATCH_NAME_CHARS = 200
MAX_IMAGE_CHARS = 1000
MAX_ATTRIBUTE_VALUE_CHARS = 4096  # also a scatter value (jobs carry it as an attribute)
MAX_ENV_VALUE_CHARS = 64 * 1024
MAX_JOBS = 1_000_000  # after scatter expansion
MAX_DEPENDENCIES = 5_000_000  # after scatter expansion
MAX_STORED_TEXT_BYTES = 512 * MIB  # commands, env and attributes of all expanded jobs
MAX_VALUES = 5_000_000  # values of a YAML file with its aliases expanded (a 100,000-job file
# has about 1,000,000)


class LimitError(ValueError):
    """A file or value over one of the limits; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class OverLimit(Exception):
    """Raised by the loaders' fast paths; `yaml_limit_problem` then says what and where."""


MAX_MESSAGE_CHARS = 600


def shorten_message(message: str) -> str:
    """A problem's message with a long value it quotes cut in the middle (a message that
    quoted a 10 MB value whole would be the file back)."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    head, tail = message[:400], message[-150:]
    return f"{head}… [{len(message) - 550:,} characters left out] …{tail}"


def size_text(n_bytes: int) -> str:
    """1536 -> "1.5 KiB", for messages."""
    size = float(n_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n_bytes} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# Files


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def read_regular_text(path: str | os.PathLike[str], *, max_bytes: int, what: str) -> str:
    """The UTF-8 text of a regular file of at most `max_bytes`; LimitError if it is another kind
    of file or larger (found without reading it), OSError or UnicodeDecodeError as usual."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting forever
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise LimitError(f"{what} is {_file_kind(info.st_mode)}, not a regular file")
        too_big = f"{what} is larger than {size_text(max_bytes)}, the most LabBatch reads"
        if info.st_size > max_bytes:
            raise LimitError(f"{too_big} ({size_text(info.st_size)})")
        data = file.read(max_bytes + 1)  # it may have grown since
    if len(data) > max_bytes:
        raise LimitError(too_big)
    return data.decode("utf-8-sig")


# ---------------------------------------------------------------------------------------------
# Text: what the loaders check as they go (`yaml_limits` scans the text to say where)


def too_long_number(text: str) -> bool:
    """A number written with more characters than any sane value needs."""
    return len(text) > MAX_NUMBER_CHARS


def whole_number_problem(value: int) -> str | None:
    if -MAX_WHOLE_NUMBER <= value <= MAX_WHOLE_NUMBER:
        return None
    return f"the number {short_text(str(value))} is too large (at most 2^53 = {MAX_WHOLE_NUMBER:,})"


def json_int(text: str) -> int:
    """`parse_int` of json.loads: refuses numbers too long or too large."""
    if too_long_number(text) or whole_number_problem(int(text)):
        raise OverLimit
    return int(text)


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook` of json.loads: refuses a key given twice."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise OverLimit
    return result


def too_deep(data: object) -> bool:
    """Whether loaded data nests more than MAX_NESTING levels (JSON's reader checks none)."""
    level = [data] if type(data) is dict or type(data) is list else []
    for _ in range(MAX_NESTING):
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
        if not level:
            return False
    return True


def short_text(text: str, n: int = 20) -> str:
    """A value for a message: cut after ``n`` characters, saying how long it was."""
    return text if len(text) <= n else f"{text[:n]}… ({len(text):,} characters)"


# ---------------------------------------------------------------------------------------------
# Values: lengths of the strings the validated file keeps


_BATCH_CAPS = {"name": MAX_BATCH_NAME_CHARS, "billing_project": MAX_NAME_CHARS}
_JOB_CAPS = {
    "command": MAX_STRING_CHARS,
    "image": MAX_IMAGE_CHARS,
    "pool": MAX_NAME_CHARS,
    "machine_type": MAX_NAME_CHARS,
}
_MAP_CAPS = {  # key: (longest key, longest value)
    "attributes": (MAX_NAME_CHARS, MAX_ATTRIBUTE_VALUE_CHARS),
    "env": (MAX_NAME_CHARS, MAX_ENV_VALUE_CHARS),
}
_CAPPED = frozenset((*_JOB_CAPS, *_MAP_CAPS, "regions"))

DataPath = tuple[str | int, ...]


def length_problems(data: Mapping[Any, Any]) -> Iterator[tuple[DataPath, str, str]]:
    """(path, field, message) for each string of the file longer than its field allows."""
    for key, cap in _BATCH_CAPS.items():
        yield from _text_problem((key,), key, data.get(key), cap)
    yield from _map_problems(("attributes",), "attributes", data.get("attributes"))
    defaults = data.get("defaults")
    if isinstance(defaults, dict):
        yield from _job_problems(("defaults",), defaults)
    jobs = data.get("jobs")
    if isinstance(jobs, list):
        for index, job in enumerate(jobs):
            if type(job) is dict and not _CAPPED.isdisjoint(job):
                yield from _job_problems(("jobs", index), job)


def _job_problems(path: DataPath, job: dict[Any, Any]) -> Iterator[tuple[DataPath, str, str]]:
    for key, cap in _JOB_CAPS.items():
        yield from _text_problem((*path, key), key, job.get(key), cap)
    for key in _MAP_CAPS:
        yield from _map_problems((*path, key), key, job.get(key))
    regions = job.get("regions")
    if isinstance(regions, list):
        for index, region in enumerate(regions):
            yield from _text_problem((*path, "regions", index), "regions", region, MAX_NAME_CHARS)


def _text_problem(
    path: DataPath, field: str, value: object, cap: int
) -> Iterator[tuple[DataPath, str, str]]:
    if isinstance(value, str) and len(value) > cap:
        yield path, field, f"{len(value):,} characters; at most {cap:,} are allowed"


def _map_problems(path: DataPath, field: str, value: object) -> Iterator[tuple[DataPath, str, str]]:
    if not isinstance(value, dict):
        return
    key_cap, value_cap = _MAP_CAPS[field]
    for key, item in value.items():
        if isinstance(key, str) and len(key) > key_cap:
            message = f"a key of {len(key):,} characters; at most {key_cap:,} are allowed"
            yield (*path, key), field, message
        elif isinstance(item, str) and len(item) > value_cap:
            message = f"{key!r}: {len(item):,} characters; at most {value_cap:,} are allowed"
            yield (*path, key), field, message


# ---------------------------------------------------------------------------------------------
# The expanded DAG, counted before expansion


class ScatterLike(Protocol):
    @property
    def values(self) -> tuple[str, ...]: ...


class CountedJob(Protocol):
    """What the checks need of a parsed job (a `spec._RawJob`)."""

    @property
    def index(self) -> int: ...  # position in the file's job list

    @property
    def label(self) -> str: ...

    @property
    def name(self) -> str | None: ...

    @property
    def fields(self) -> dict[str, Any]: ...

    @property
    def depends_on(self) -> tuple[str, ...]: ...


class ProblemSink(Protocol):
    """Where problems go (a `job_fields.Issues`)."""

    def __bool__(self) -> bool: ...

    def add(
        self, path: DataPath, message: str, *, job: str | None = None, field: str | None = None
    ) -> None: ...


def check_limits(
    data: Mapping[Any, Any],
    jobs: Sequence[CountedJob],
    defaults: Mapping[str, Any],
    issues: ProblemSink,
) -> None:
    """Report strings over their length limits, then a DAG too big once its scatters expand
    (counted from the values, before anything is expanded)."""
    labels: dict[str | int, str] = {job.index: job.label for job in jobs}
    for path, key, message in length_problems(data):
        job = labels.get(path[1], f"#{path[1]}") if path[0] == "jobs" else None
        issues.add(path, message, job=job, field=key)
    if issues:
        return
    problem = dag_size_problem(dag_size(jobs, defaults))
    if problem:
        issues.add(("jobs",), problem, field="jobs")


@dataclass(frozen=True, slots=True)
class DagSize:
    """How big a DAG is once its scatters are expanded."""

    n_jobs: int
    n_dependencies: int
    text_bytes: int  # commands, env and attributes, as stored for every job
    widest: str  # the job that adds the most dependencies, for the message


def dag_size(jobs: Sequence[CountedJob], defaults: Mapping[str, Any]) -> DagSize:
    """Count the expanded jobs, dependencies and stored text without expanding anything."""
    n_of: dict[str, int] = {}
    for job in jobs:
        scatter = job.fields.get("scatter")
        if job.name is not None:
            n_of[job.name] = len(scatter.values) if scatter is not None else 1
    base_text = _text_bytes(defaults)
    n_jobs = n_dependencies = text_bytes = 0
    widest, widest_n = "", -1
    for job in jobs:
        scatter = job.fields.get("scatter")
        n = len(scatter.values) if scatter is not None else 1
        n_parents = sum(n_of.get(parent, 1) for parent in set(job.depends_on))
        n_jobs += n
        n_dependencies += n * n_parents
        text_bytes += n * (base_text + _text_bytes(job.fields))
        if n * n_parents > widest_n:
            widest, widest_n = _widest_text(job, n, n_parents), n * n_parents
    return DagSize(n_jobs, n_dependencies, text_bytes, widest)


def _text_bytes(fields: Mapping[str, Any]) -> int:
    total = len(fields.get("command") or "")
    for key in ("env", "attributes"):
        mapping = fields.get(key)
        if isinstance(mapping, dict):
            total += sum(len(str(k)) + len(str(v)) for k, v in mapping.items())
    return total


def _widest_text(job: CountedJob, n: int, n_parents: int) -> str:
    name = job.name or "?"
    if n == 1:
        return f"job {name!r} depends on {n_parents:,} jobs"
    return f"each of the {n:,} jobs of scatter {name!r} depends on {n_parents:,} jobs"


def dag_size_problem(size: DagSize) -> str | None:
    """Why the expanded DAG is too big to store, with its counts and the caps; else None."""
    if size.n_jobs > MAX_JOBS or size.n_dependencies > MAX_DEPENDENCIES:
        return (
            f"the DAG expands to {size.n_jobs:,} jobs and {size.n_dependencies:,} dependencies; "
            f"at most {MAX_JOBS:,} jobs and {MAX_DEPENDENCIES:,} dependencies are allowed "
            f"({size.widest}). Split the batch, or make fewer, bigger jobs (a gather job that "
            "depends on a whole scatter and feeds the next one adds one dependency per job)"
        )
    if size.text_bytes > MAX_STORED_TEXT_BYTES:
        return (
            f"the jobs' commands, environments and attributes add up to "
            f"{size_text(size.text_bytes)} once scatters are expanded; at most "
            f"{size_text(MAX_STORED_TEXT_BYTES)} are allowed (put large data in files)"
        )
    return None
