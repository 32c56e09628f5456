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
