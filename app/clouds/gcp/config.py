"""The Compute Engine settings of a pool: the accepted keys, their defaults and their checks.

Pool configuration keys (the pool's stored ``config`` dict):
- ``project`` (required): the Google Cloud project ID.
- ``zones`` (required): list of zones tried in order; a transient failure (quota, capacity,
  rate limit, unreachable API) moves on to the next zone.
- ``machine_type`` (required unless the request names one), e.g. ``n2-standard-8``.
- ``allow_from`` (required): the addresses or CIDR ranges the driver dials the workers from,
  usually the desktop's public address (``curl -s https://ifconfig.me``); the pool's firewall
  rule admits only these to the worker port.
- ``boot_disk_gb`` (default 20), ``image`` (default Debian 12), ``network``, ``subnetwork``.
- ``worker_port`` (default 8443): the TCP port the worker serves https/wss on.
- ``worker_requirement``: the pip requirement the VM installs the worker from (default: the
  LabBatch release that matches the desktop).
- ``network_tag`` (default ``labbatch-worker``): the VMs' network tag, the firewall rule's target.
- ``use_internal_ip`` (default false): dial the VMs' internal address (a VPN or a driver in the
  same VPC) instead of their external one.
- ``api_endpoint``: another API address (private endpoints, the fake server in tests); plain
  ``http://`` only to a loopback address, where no credentials are sent.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.clouds.bootstrap import WORKER_PORT
from app.clouds.gcp.resources import DEFAULT_IMAGE
from app.errors import CloudError

DEFAULT_NETWORK_TAG = "labbatch-worker"
CONFIG_KEYS = (
    "project",
    "zones",
    "machine_type",
    "allow_from",
    "boot_disk_gb",
    "image",
    "network",
    "subnetwork",
    "worker_port",
    "worker_requirement",
    "network_tag",
    "use_internal_ip",
    "api_endpoint",
    "storage",  # Cloud Storage settings: app/clouds/storage.py
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# Compute Engine network tags and firewall rule names: RFC 1035 labels of at most 63 chars.
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """The validated Compute Engine settings of one pool."""

    project: str
    zones: tuple[str, ...]
    machine_type: str | None
    allow_from: tuple[str, ...]  # normalised CIDR ranges, all IPv4 or all IPv6
    boot_disk_gb: int = 20
    image: str = DEFAULT_IMAGE
    network: str | None = None
    subnetwork: str | None = None
    worker_port: int = WORKER_PORT
    worker_requirement: str | None = None
    network_tag: str = DEFAULT_NETWORK_TAG
    use_internal_ip: bool = False
    api_endpoint: str | None = None


def is_loopback_http(api_endpoint: str | None) -> bool:
    """Whether ``api_endpoint`` is plain http to this machine (a fake or a local proxy)."""
    if not api_endpoint:
        return False
    parts = urlsplit(api_endpoint)
    return parts.scheme == "http" and (parts.hostname or "") in LOOPBACK_HOSTS


def is_plain_http(api_endpoint: str | None) -> bool:
    """Whether ``api_endpoint`` is an unencrypted http address."""
    return bool(api_endpoint) and urlsplit(api_endpoint or "").scheme == "http"


class _Checker:
    """Reads one pool's config; every failure is a CloudError naming the pool and the key."""

    def __init__(self, pool: str, config: Mapping[str, Any]) -> None:
        self.pool = pool
        self.config = config

    def bad(self, key: str, what: str) -> CloudError:
        return CloudError(
            f"pool {self.pool}: the Compute Engine setting '{key}' {what}; "
            f"set it in the pool's configuration (labbatch pool create … --cloud gcp)"
        )

    def optional_str(self, key: str) -> str | None:
        value = self.config.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.bad(key, "must be a non-empty string")
        return value

    def whole_number(self, key: str, default: int, low: int, high: int, what: str) -> int:
        value = self.config.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.bad(key, what)
        return value

    def flag(self, key: str) -> bool:
        value = self.config.get(key, False)
        if not isinstance(value, bool):
            raise self.bad(key, "must be true or false")
        return value

    def allow_from(self) -> tuple[str, ...]:
        key = "allow_from"
        hint = (
            "the addresses LabBatch dials the workers from, usually this computer's public "
            "address (`curl -s https://ifconfig.me`), e.g. ['203.0.113.7'] or a CIDR range"
        )
        value = self.config.get(key)
        if not isinstance(value, list | tuple) or not value:
            raise self.bad(key, f"is missing or not a list: give {hint}")
        ranges: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in value:
            try:
                ranges.append(ipaddress.ip_network(str(item).strip(), strict=False))
            except ValueError as exc:
                raise self.bad(
                    key, f"has {item!r}, not an IP address or CIDR range: give {hint}"
                ) from exc
        if len({r.version for r in ranges}) > 1:
            raise self.bad(
                key,
                "mixes IPv4 and IPv6 ranges, which one Compute Engine firewall rule cannot hold; "
                "give the IPv4 ones (the workers' addresses are IPv4)",
            )
        return tuple(dict.fromkeys(str(r) for r in ranges))

    def network_tag(self) -> str:
        tag = self.optional_str("network_tag") or DEFAULT_NETWORK_TAG
        if not _RFC1035.match(tag):
            raise self.bad(
                "network_tag",
                "must be 1-63 lowercase letters, digits or dashes, starting with a letter",
            )
        return tag

    def api_endpoint(self) -> str | None:
        endpoint = self.optional_str("api_endpoint")
        if is_plain_http(endpoint) and not is_loopback_http(endpoint):
            raise self.bad(
                "api_endpoint",
                "is plain http to another machine, which would send the Google credentials "
                "unencrypted; use https (plain http is only for a fake or proxy on 127.0.0.1)",
            )
        return endpoint


def pool_settings(pool: str, config: Mapping[str, Any]) -> PoolSettings:
    """Validate a pool's config; a CloudError names the pool and the bad key."""
    check = _Checker(pool, config)
    project = config.get("project")
    if not isinstance(project, str) or not project:
        raise check.bad("project", "is missing (the Google Cloud project ID)")
    zones = config.get("zones")
    if (
        not isinstance(zones, list | tuple)
        or not zones
        or not all(isinstance(z, str) and z for z in zones)
    ):
        raise check.bad("zones", "is missing or not a list of zones such as ['us-central1-a']")
    return PoolSettings(
        project=project,
        zones=tuple(zones),
        machine_type=check.optional_str("machine_type"),
        allow_from=check.allow_from(),
        boot_disk_gb=check.whole_number(
            "boot_disk_gb", 20, 10, 65536, "must be a whole number of GB, at least 10"
        ),
        image=check.optional_str("image") or DEFAULT_IMAGE,
        network=check.optional_str("network"),
        subnetwork=check.optional_str("subnetwork"),
        worker_port=check.whole_number(
            "worker_port", WORKER_PORT, 1, 65535, "must be a TCP port number (1-65535)"
        ),
        worker_requirement=check.optional_str("worker_requirement"),
        network_tag=check.network_tag(),
        use_internal_ip=check.flag("use_internal_ip"),
        api_endpoint=check.api_endpoint(),
    )


def check_config(pool: str, config: Mapping[str, Any]) -> None:
    """Refuse a pool config with unknown keys or bad values (a CloudError naming pool and key)."""
    unknown = sorted(str(k) for k in config if k not in CONFIG_KEYS)
    if unknown:
        raise CloudError(
            f"pool {pool}: unknown Compute Engine setting(s) {', '.join(map(repr, unknown))}; "
            f"the accepted ones are {', '.join(CONFIG_KEYS)}"
        )
    pool_settings(pool, config)
