"""The interface every cloud implements: create, delete and watch worker instances."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class InstanceRequest:
    """What the engine asks a cloud for: one worker with this many cores."""

    name: str
    pool: str
    cores_mcpu: int
    token: str
    machine_type: str | None = None
    location: str | None = None
    preemptible: bool = False
    idle_timeout_s: float | None = None
    boot_delay_s: float = 0.0  # the local cloud waits this long, standing in for VM boot


@dataclass(frozen=True, slots=True)
class CreatedInstance:
    """Where a new worker listens and how the cloud finds it again."""

    name: str
    address: str  # host:port the driver dials
    location: str
    handle: dict[str, Any] = field(default_factory=dict)


# The key of CreatedInstance.handle under which a cloud puts the SHA-256 of the worker's
# certificate: the driver dials over TLS and accepts only that one (local workers have none).
TLS_PIN_KEY = "tls_sha256"

# Called by a cloud when it learns that an instance is gone (process exit, preemption).
LostCallback = Callable[[str, str], None]


class CloudDriver(Protocol):
    """Resource manager of one cloud (local processes, GCE, Azure)."""

    kind: str

    def on_lost(self, callback: LostCallback) -> None:
        """Register the function called with (instance name, reason) when one disappears."""

    async def create_instance(self, request: InstanceRequest) -> CreatedInstance:
        """Start a worker; returns once the cloud says it exists. A cloud VM then boots for
        seconds to minutes: the driver dials it until it answers or the boot deadline passes."""

    async def adopt_instance(self, name: str, handle: dict[str, Any]) -> bool:
        """Take over an instance started by an earlier driver; False if it is gone."""

    async def delete_instance(self, name: str, *, handle: dict[str, Any] | None = None) -> None:
        """Stop a worker and release its resources; returns once the cloud confirms it gone
        (idempotent: one already gone is fine). ``handle`` (with its ``pool``) finds a VM
        this driver does not own, e.g. one an earlier driver failed to delete; raises
        CloudError when the cloud fails, and the caller tries again later."""

    async def boot_log(self, name: str) -> str:
        """The VM's serial console / boot diagnostics so far ("" where the cloud has none)."""

    async def delete_orphans(self, pool: str, known_names: Collection[str]) -> list[str]:
        """Delete the pool's instances that are not in ``known_names`` (left behind by a
        driver that crashed); returns their names."""

    async def release(self) -> None:
        """Stop watching, leaving every instance running: another driver adopts them."""

    async def close(self) -> None:
        """Delete every instance this driver owns."""


# --- object storage ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedUrl:
    """A short-lived URL that reads or writes exactly one object.

    ``url`` is a bearer secret until ``expires_at``: its repr hides the signature, and it must
    never be logged or stored; ``public`` is the location to name in messages instead.
    """

    url: str = field(repr=False)
    kind: str  # "gcs" | "azure": how the worker uploads to it
    public: str  # gs://… or https://….blob.core.windows.net/… without any signature
    expires_at: float  # seconds since the epoch
    # GCS writes only: a V4 signed POST that starts a resumable upload session of the same
    # object (header ``x-goog-resumable: start``); a bearer secret like ``url``
    resumable_url: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """What the store says about one object: its size, version and checksums (base64)."""

    location: str
    size_bytes: int
    generation: str  # GCS generation, Azure ETag: changes whenever the content does
    md5: str | None = None
    crc32c: str | None = None

    @property
    def cache_key(self) -> str:
        """A stable id of this content: the location and its version."""
        return f"{self.location}#{self.generation}"


@dataclass(frozen=True, slots=True)
class ScratchCheck:
    """Whether a scratch location works for a pool: problems stop it, warnings do not."""

    location: str
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    region: str | None = None  # where the bucket or account keeps its data, when known

    @property
    def ok(self) -> bool:
        """True when nothing stops the pool from using the location."""
        return not self.problems


class StorageSigner(Protocol):
    """Object storage of one cloud as the engine uses it: sign, stat, clean up, check.

    Locations are the canonical strings of ``app.models.locations`` (``gs://b/o``,
    ``https://<account>.blob.core.windows.net/<container>/<path>``). Errors are CloudError
    (NotFoundError for a missing object) naming the location, never a signature.
    """

    kind: str

    async def sign_get(self, location: str, ttl_s: float) -> SignedUrl:
        """A URL that reads exactly this object for ``ttl_s`` seconds."""

    async def sign_put(self, location: str, ttl_s: float) -> SignedUrl:
        """A URL that creates or replaces exactly this object for ``ttl_s`` seconds."""

    async def stat(self, location: str) -> ObjectStat:
        """Size, version and checksums of one object."""

    async def delete_prefix(self, location: str, *, max_objects: int | None = None) -> int:
        """Delete the objects under a prefix, at most ``max_objects`` (scratch clean-up);
        returns how many."""

    async def list_children(self, location: str) -> list[str]:
        """The names of the "folders" directly under a prefix (``5`` for ``<prefix>/5/…``)."""

    async def download_to(self, location: str, path: str) -> int:
        """Copy one object to a local file with the user's credentials; returns its size."""

    async def check_scratch(self, location: str, *, region: str | None = None) -> ScratchCheck:
        """Whether the pool's workers can use ``location`` as scratch (exists, writable, and
        in ``region``, the pool's region, where one is given)."""

    async def egress_warning(self, location: str, region: str) -> str | None:
        """What reading or writing ``location`` from ``region`` costs in egress, if anything
        (None when the store is in that region, or its region cannot be known)."""
