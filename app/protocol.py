"""Wire messages between the driver and a worker agent.

The driver dials the worker: a WebSocket to ``WS_PATH`` on the worker's port, with the
instance's secret in the ``Authorization: Bearer <token>`` header. Every frame is one JSON
object with a ``type`` field. Messages carry lists so that a burst of schedules or completions
costs one frame, not one per job.

driver -> worker: ``schedule``, ``cancel``, ``ack``, ``shutdown``
worker -> driver: ``hello`` (first frame, with every job the worker still knows, for
reconciliation), ``started``, ``completed``, ``heartbeat``, ``retiring``

This module imports nothing from the rest of ``app``: the worker ships with it alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

PROTOCOL_VERSION = 2  # 2: files on cloud pools (signed URLs, resumable uploads) in JobRun
WS_PATH = "/api/v1/connect"
HEALTH_PATH = "/healthz"
LOG_PATH = "/api/v1/log/{batch_id}/{job_id}/{attempt}"
TOKEN_ENV = "LABBATCH_WORKER_TOKEN"
# The WebSocket close code a worker sends a driver connection that a newer one replaced.
REPLACED_CLOSE_CODE = 4001
AUTH_SCHEME = "Bearer"
# A completed job's log travels back with its completion, cut to its last bytes.
MAX_LOG_BYTES = 1 << 20


class Outcome(StrEnum):
    """How an attempt ended on the worker."""

    SUCCESS = "success"  # exit code 0
    FAILED = "failed"  # non-zero exit code
    ERROR = "error"  # could not run: timeout, missing container runtime, spawn failure
    CANCELLED = "cancelled"  # killed on the driver's request


@dataclass(frozen=True, slots=True)
class AttemptRef:
    """Names one attempt of one job."""

    batch_id: int
    job_id: int
    attempt: int

    def key(self) -> tuple[int, int, int]:
        return (self.batch_id, self.job_id, self.attempt)


@dataclass(frozen=True, slots=True)
class FileTransfer:
    """One file to stage in before an attempt or to save after it."""

    local: str  # relative to the attempt's working directory: "in/ref.fa", "out/vcf.vcf.gz"
    url: str  # from / to: file:///abs/path (local pools), https://... (signed, cloud)
    name: str = ""  # the input's or output's name (`vcf.tbi` for a member), for messages
    size_bytes: int | None = None
    cache_key: str | None = None  # stable id of the content: "gs://b/o#<generation>", ETag
    md5: str | None = None  # expected, base64 (cloud), for integrity checks
    crc32c: str | None = None  # expected, base64 (GCS)
    kind: str = "file"  # "file" | "gcs" | "azure": how to upload to `url`
    # GCS outputs: a signed POST that starts a resumable session (large files go up in chunks)
    resumable_url: str | None = None


def _transfer(d: dict[str, Any]) -> FileTransfer:
    return FileTransfer(
        local=d["local"],
        url=d["url"],
        name=d.get("name", ""),
        size_bytes=d.get("size_bytes"),
        cache_key=d.get("cache_key"),
        md5=d.get("md5"),
        crc32c=d.get("crc32c"),
        kind=d.get("kind", "file"),
        resumable_url=d.get("resumable_url"),
    )


@dataclass(frozen=True, slots=True)
class JobRun:
    """Everything a worker needs to run one attempt."""

    batch_id: int
    job_id: int
    attempt: int
    name: str
    command: str
    cores_mcpu: int
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    image: str | None = None
    memory_bytes: int | None = None
    # A directory shared by the jobs of one batch; None lets the worker choose one of its own.
    batch_dir: str | None = None
    # Files: staged before the command, saved after exit 0 (one local path may be saved to
    # several URLs); `paths` maps each name the command uses (`ref`, `vcf.tbi`) to its local
    # path, for $name / $name_member and {{name}} / {{name.member}}.
    inputs: tuple[FileTransfer, ...] = ()
    outputs: tuple[FileTransfer, ...] = ()
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> AttemptRef:
        return AttemptRef(self.batch_id, self.job_id, self.attempt)


@dataclass(frozen=True, slots=True)
class JobStart:
    """A worker started an attempt at ``start_time`` (seconds since the epoch)."""

    batch_id: int
    job_id: int
    attempt: int
    start_time: float

    @property
    def ref(self) -> AttemptRef:
        return AttemptRef(self.batch_id, self.job_id, self.attempt)


@dataclass(frozen=True, slots=True)
class JobResult:
    """How an attempt ended, with the tail of its log."""

    batch_id: int
    job_id: int
    attempt: int
    outcome: Outcome
    exit_code: int | None
    start_time: float | None
    end_time: float
    error: str | None = None
    log: str = ""
    # Transfer figures of an attempt with files: in_bytes, in_s, out_bytes, out_s,
    # linked_bytes, copied_bytes, cache_hits, cache_bytes_saved.
    staging: dict[str, float] | None = None

    @property
    def ref(self) -> AttemptRef:
        return AttemptRef(self.batch_id, self.job_id, self.attempt)


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every frame; subclasses set ``type``."""

    type: ClassVar[str] = ""

    def to_json(self) -> str:
        body = _plain(self)
        body["type"] = self.type
        return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Worker -> driver, first frame: who I am and every job I still know about."""

    type: ClassVar[str] = "hello"
    version: int
    instance: str
    cores_mcpu: int
    free_mcpu: int
    running: list[JobStart] = field(default_factory=list)
    finished: list[JobResult] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Schedule(Message):
    """Driver -> worker: run these attempts."""

    type: ClassVar[str] = "schedule"
    jobs: list[JobRun]


@dataclass(frozen=True, slots=True)
class Cancel(Message):
    """Driver -> worker: kill these attempts' process groups."""

    type: ClassVar[str] = "cancel"
    attempts: list[AttemptRef]


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """Driver -> worker: these results are stored; forget them."""

    type: ClassVar[str] = "ack"
    attempts: list[AttemptRef]


@dataclass(frozen=True, slots=True)
class Shutdown(Message):
    """Driver -> worker: kill every job and exit."""

    type: ClassVar[str] = "shutdown"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Started(Message):
    """Worker -> driver: these attempts are running."""

    type: ClassVar[str] = "started"
    jobs: list[JobStart]


@dataclass(frozen=True, slots=True)
class Completed(Message):
    """Worker -> driver: these attempts ended."""

    type: ClassVar[str] = "completed"
    jobs: list[JobResult]


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """Worker -> driver: I am alive; this is my load."""

    type: ClassVar[str] = "heartbeat"
    time: float
    n_running: int
    free_mcpu: int
    # the cache keys (and sizes) of the inputs this worker's cache holds, when they changed since
    # its last heartbeat on this connection (None: unchanged); the scheduler prefers holders
    cached: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Retiring(Message):
    """Worker -> driver: I have been idle too long and will exit."""

    type: ClassVar[str] = "retiring"
    idle_s: float


def _plain(value: Any) -> Any:
    """JSON-ready form of a message: a shallow walk (dataclasses.asdict deep-copies everything
    and was the top cost per job on the hot path)."""
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    names = _FIELDS.get(type(value))
    if names is None:
        return value
    return {name: _plain(getattr(value, name)) for name in names}


_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls))
    for cls in (
        AttemptRef,
        FileTransfer,
        JobRun,
        JobStart,
        JobResult,
        Hello,
        Schedule,
        Cancel,
        Ack,
        Shutdown,
        Started,
        Completed,
        Heartbeat,
        Retiring,
    )
}


class ProtocolError(ValueError):
    """A frame that is not valid JSON or not a known message."""


def _ref(d: dict[str, Any]) -> AttemptRef:
    return AttemptRef(int(d["batch_id"]), int(d["job_id"]), int(d["attempt"]))


def _start(d: dict[str, Any]) -> JobStart:
    return JobStart(int(d["batch_id"]), int(d["job_id"]), int(d["attempt"]), d["start_time"])


def _result(d: dict[str, Any]) -> JobResult:
    return JobResult(
        batch_id=int(d["batch_id"]),
        job_id=int(d["job_id"]),
        attempt=int(d["attempt"]),
        outcome=Outcome(d["outcome"]),
        exit_code=d.get("exit_code"),
        start_time=d.get("start_time"),
        end_time=d["end_time"],
        error=d.get("error"),
        log=d.get("log", ""),
        staging=d.get("staging"),
    )


def _run(d: dict[str, Any]) -> JobRun:
    return JobRun(
        batch_id=int(d["batch_id"]),
        job_id=int(d["job_id"]),
        attempt=int(d["attempt"]),
        name=d["name"],
        command=d["command"],
        cores_mcpu=int(d["cores_mcpu"]),
        env=dict(d.get("env") or {}),
        timeout_s=d.get("timeout_s"),
        image=d.get("image"),
        memory_bytes=d.get("memory_bytes"),
        batch_dir=d.get("batch_dir"),
        inputs=tuple(_transfer(x) for x in d.get("inputs") or ()),
        outputs=tuple(_transfer(x) for x in d.get("outputs") or ()),
        paths=dict(d.get("paths") or {}),
    )


def _build(kind: str, d: dict[str, Any]) -> Message:
    if kind == "hello":
        return Hello(
            version=int(d["version"]),
            instance=d["instance"],
            cores_mcpu=int(d["cores_mcpu"]),
            free_mcpu=int(d["free_mcpu"]),
            running=[_start(x) for x in d.get("running", [])],
            finished=[_result(x) for x in d.get("finished", [])],
        )
    if kind == "schedule":
        return Schedule(jobs=[_run(x) for x in d["jobs"]])
    if kind == "cancel":
        return Cancel(attempts=[_ref(x) for x in d["attempts"]])
    if kind == "ack":
        return Ack(attempts=[_ref(x) for x in d["attempts"]])
    if kind == "shutdown":
        return Shutdown(reason=d.get("reason", ""))
    if kind == "started":
        return Started(jobs=[_start(x) for x in d["jobs"]])
    if kind == "completed":
        return Completed(jobs=[_result(x) for x in d["jobs"]])
    if kind == "heartbeat":
        return Heartbeat(
            time=d["time"],
            n_running=int(d["n_running"]),
            free_mcpu=d["free_mcpu"],
            cached=d.get("cached"),
        )
    if kind == "retiring":
        return Retiring(idle_s=d["idle_s"])
    raise ProtocolError(f"unknown message type {kind!r}")


def decode(text: str | bytes) -> Message:
    """Parse one frame; raises ProtocolError on anything malformed."""
    try:
        d = json.loads(text)
        kind = d.pop("type")
        return _build(kind, d)
    except ProtocolError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"malformed frame: {exc}") from exc


def bearer(token: str) -> str:
    """The Authorization header value for a worker token."""
    return f"{AUTH_SCHEME} {token}"
