"""The configuration of an Azure pool: every key, checked once into an AzurePoolSettings.

Pool configuration keys (the pool's stored ``config`` dict):

- ``subscription_id``, ``resource_group``, ``location``: where the VMs live (required).
- ``vm_size``: e.g. ``Standard_D4s_v3`` (required unless the request names a machine type).
- ``fallback_vm_sizes``: optional list of sizes tried in order when Azure answers ``vm_size``
  with a transient error (quota, no capacity). Azure pools have one location, so this list
  stands in for the zone fallback of GCE pools. Pick sizes with the same cores and memory
  (e.g. ``Standard_D4s_v5``, ``Standard_D4as_v5``): the engine counts the requested cores.
- ``subnet_id``: ARM id of an existing subnet in ``location`` (required; made once by hand).
  Each VM gets its own network interface and, unless ``use_private_ip``, a Standard static
  public IP; both are deleted with the VM.
- ``use_private_ip``: dial the VM's private address and make no public IP (default false; for
  drivers reaching the virtual network through a VPN).
- ``allow_from``: the addresses or CIDR ranges allowed to reach the worker port (required): the
  public address of the machine running LabBatch (``curl -s https://ifconfig.me``). LabBatch
  keeps the network security group ``labbatch-<pool>-worker`` allowing exactly these.
- ``worker_port``: the TCP port of the worker (default 8443).
- ``worker_requirement``: pip requirement the VM installs the worker from (default: this
  LabBatch's version).
- ``ssh_public_key``: Azure refuses Linux VMs without one, since password login is disabled.
- ``image``: optional Marketplace image URN ``publisher:offer:sku:version`` (default Debian 12).
- ``base_url``: optional Resource Manager endpoint (private endpoints; plain ``http://`` only to
  a loopback address, for a local proxy or the tests' fake).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from app.clouds.azure.resources import ImageRef
from app.clouds.bootstrap import WORKER_PORT
from app.errors import CloudError

CONFIG_KEYS: frozenset[str] = frozenset(
    {
        "subscription_id",
        "resource_group",
        "location",
        "vm_size",
        "fallback_vm_sizes",
        "subnet_id",
        "use_private_ip",
        "allow_from",
        "worker_port",
        "worker_requirement",
        "ssh_public_key",
        "image",
        "base_url",
        "storage",  # Blob storage settings: app/clouds/storage.py
    }
)
SUBNET_ID_RE = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/"
    r"virtualNetworks/[^/]+/subnets/[^/]+",
    re.IGNORECASE,
)
# what may sit inside the NSG name labbatch-<pool>-worker (Azure allows 80 characters)
POOL_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
LOOPBACK_NAMES = frozenset({"localhost"})
ALLOW_FROM_HINT = (
    "list the addresses allowed to reach the workers, e.g. the public address of this machine "
    "(`curl -s https://ifconfig.me`)"
)


@dataclass(frozen=True, slots=True)
class AzurePoolSettings:
    """The validated settings of one Azure pool."""

    subscription_id: str
    resource_group: str
    location: str
    vm_size: str | None
    fallback_vm_sizes: tuple[str, ...]
    subnet_id: str
    use_private_ip: bool
    allow_from: tuple[str, ...]  # normalised CIDRs, e.g. "203.0.113.7/32"
    worker_port: int
    worker_requirement: str
    ssh_public_key: str
    image: ImageRef
    base_url: str | None

    def with_location(self, handle: Mapping[str, Any]) -> AzurePoolSettings:
        """These settings with the subscription, group and location an instance handle names."""
        found = {
            key: handle[key]
            for key in ("subscription_id", "resource_group", "location")
            if isinstance(handle.get(key), str) and handle[key]
        }
        return replace(self, **found)


def check_config(pool: str, config: Mapping[str, Any]) -> None:
    """Raise CloudError (naming the pool and the key) unless ``config`` is a valid Azure pool."""
    parse_config(pool, config)


def parse_config(pool: str, config: Mapping[str, Any]) -> AzurePoolSettings:
    """The settings of ``pool``; CloudError naming the pool and the key when one is wrong."""
    unknown = sorted(str(key) for key in config if key not in CONFIG_KEYS)
    if unknown:
        raise CloudError(
            f"Azure pool {pool!r} has unknown configuration keys {', '.join(map(repr, unknown))}; "
            f"the accepted keys are {', '.join(sorted(CONFIG_KEYS))}."
        )
    if not POOL_NAME_RE.fullmatch(pool):
        raise CloudError(
            f"Azure pool {pool!r}: the name may have only letters, digits, '_', '.' and '-' "
            "(at most 64), since it names the pool's network security group."
        )
    return AzurePoolSettings(
        subscription_id=_text(pool, config, "subscription_id"),
        resource_group=_text(pool, config, "resource_group"),
        location=_text(pool, config, "location"),
        vm_size=_text(pool, config, "vm_size", required=False) or None,
        fallback_vm_sizes=_sizes(pool, config),
        subnet_id=_subnet_id(pool, config),
        use_private_ip=_flag(pool, config, "use_private_ip"),
        allow_from=_allow_from(pool, config),
        worker_port=_port(pool, config),
        worker_requirement=_text(pool, config, "worker_requirement", required=False),
        ssh_public_key=_text(
            pool, config, "ssh_public_key", why="Azure requires an SSH key for Linux VMs"
        ),
        image=_image(pool, config),
        base_url=_base_url(pool, config),
    )


def _bad(pool: str, key: str, what: str) -> CloudError:
    return CloudError(f"Azure pool {pool!r}: the configuration key {key!r} {what}.")


def _text(
    pool: str, config: Mapping[str, Any], key: str, *, required: bool = True, why: str = ""
) -> str:
    value = config.get(key)
    if value is None or value == "":
        if required:
            hint = f" ({why})" if why else ""
            raise CloudError(f"Azure pool {pool!r} has no {key!r} in its configuration{hint}.")
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _bad(pool, key, "must be a non-empty string")
    return value.strip()


def _flag(pool: str, config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if not isinstance(value, bool):
        raise _bad(pool, key, "must be true or false")
    return value


def _sizes(pool: str, config: Mapping[str, Any]) -> tuple[str, ...]:
    sizes = config.get("fallback_vm_sizes") or []
    if not isinstance(sizes, list) or not all(isinstance(s, str) and s for s in sizes):
        raise _bad(pool, "fallback_vm_sizes", "must be a list of VM sizes")
    return tuple(sizes)


def _subnet_id(pool: str, config: Mapping[str, Any]) -> str:
    why = "the ARM id of an existing subnet in the pool's location"
    subnet_id = _text(pool, config, "subnet_id", why=why)
    if not SUBNET_ID_RE.fullmatch(subnet_id):
        raise _bad(
            pool,
            "subnet_id",
            "must be a subnet's ARM id, /subscriptions/<id>/resourceGroups/<group>/providers/"
            "Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet> "
            "(`az network vnet subnet show ... --query id`)",
        )
    return subnet_id


def _allow_from(pool: str, config: Mapping[str, Any]) -> tuple[str, ...]:
    value = config.get("allow_from")
    if value is None or value == []:
        raise CloudError(
            f"Azure pool {pool!r} has no 'allow_from' in its configuration; {ALLOW_FROM_HINT}."
        )
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(
            pool, "allow_from", f"must be a list of addresses or CIDR ranges; {ALLOW_FROM_HINT}"
        )
    networks: list[str] = []
    for text in value:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise _bad(
                pool, "allow_from", f"has {text!r}, which is no IP address or CIDR range"
            ) from None
        networks.append(str(network))
    return tuple(dict.fromkeys(networks))


def _port(pool: str, config: Mapping[str, Any]) -> int:
    port = config.get("worker_port", WORKER_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _bad(pool, "worker_port", "must be a TCP port number (1-65535)")
    return port


def _image(pool: str, config: Mapping[str, Any]) -> ImageRef:
    urn = _text(pool, config, "image", required=False)
    if not urn:
        return ImageRef()
    parts = urn.split(":")
    if len(parts) != 4 or not all(parts):
        raise CloudError(
            f"Azure pool {pool!r} has image {urn!r}; write it as publisher:offer:sku:version, "
            "e.g. Debian:debian-12:12-gen2:latest."
        )
    return ImageRef(*parts)


def is_loopback_http(base_url: str) -> bool:
    """True for a plain-http URL to this machine (a local proxy or the tests' fake)."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _base_url(pool: str, config: Mapping[str, Any]) -> str | None:
    base_url = _text(pool, config, "base_url", required=False)
    if not base_url:
        return None
    scheme = urlsplit(base_url).scheme
    if scheme == "https" or is_loopback_http(base_url):
        return base_url.rstrip("/")
    if scheme == "http":
        raise _bad(
            pool,
            "base_url",
            f"is {base_url!r}: plain http is allowed only to 127.0.0.1, ::1 or localhost, since "
            "Azure credentials must never travel unencrypted; use https",
        )
    raise _bad(pool, "base_url", f"is {base_url!r}; give an https:// URL")
