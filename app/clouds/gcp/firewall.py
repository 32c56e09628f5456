"""The firewall rule that lets the driver reach a pool's workers, and nobody else.

One ingress rule per pool, ``labbatch-<pool>-worker``: tcp to the worker port, from the pool's
``allow_from`` ranges, to the VMs carrying the pool's network tag.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import CloudError

_INVALID = re.compile(r"[^a-z0-9-]")
_MAX_NAME = 63
PERMISSION_HINT = (
    "the permissions compute.firewalls.create and compute.firewalls.update (and "
    "compute.networks.updatePolicy on the network), e.g. the role Compute Security Admin "
    "(roles/compute.securityAdmin)"
)


@dataclass(frozen=True, slots=True)
class FirewallRule:
    """The ingress rule a pool needs: who may dial which port of which VMs."""

    name: str
    network: str  # a full or partial URL, e.g. global/networks/default
    port: int
    source_ranges: tuple[str, ...]
    target_tag: str


def rule_name(pool: str) -> str:
    """``labbatch-<pool>-worker`` as a valid rule name; a hash keeps altered names apart."""
    cleaned = _INVALID.sub("-", pool.lower())
    name = f"labbatch-{cleaned}-worker"
    if cleaned == pool and len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(pool.encode()).hexdigest()[:8]
    room = _MAX_NAME - len("labbatch--worker-") - len(digest)
    return f"labbatch-{cleaned[:room].rstrip('-')}-{digest}-worker"


def firewall_body(rule: FirewallRule) -> dict[str, Any]:
    """The firewalls.insert body (REST field names) for ``rule``."""
    return {
        "name": rule.name,
        "network": rule.network,
        "description": "LabBatch: the driver dials the pool's workers (https/wss)",
        "direction": "INGRESS",
        "priority": 1000,
        "allowed": [{"IPProtocol": "tcp", "ports": [str(rule.port)]}],
        "sourceRanges": list(rule.source_ranges),
        "targetTags": [rule.target_tag],
        "disabled": False,
    }


def _last_segment(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def same_network(existing: Mapping[str, Any], rule: FirewallRule) -> bool:
    """Whether an existing rule (REST JSON) sits on the rule's network."""
    return _last_segment(str(existing.get("network", ""))) == _last_segment(rule.network)


def patch_body(existing: Mapping[str, Any], rule: FirewallRule) -> dict[str, Any] | None:
    """The fields to patch so that ``existing`` (REST JSON) becomes ``rule``; None if it is."""
    wanted = firewall_body(rule)
    allowed = [
        (str(a.get("IPProtocol", "")).lower(), sorted(a.get("ports", [])))
        for a in existing.get("allowed", [])
    ]
    same = (
        allowed == [("tcp", [str(rule.port)])]
        and not existing.get("denied")
        and str(existing.get("direction", "INGRESS")) == "INGRESS"
        and sorted(existing.get("sourceRanges", [])) == sorted(rule.source_ranges)
        and list(existing.get("targetTags", [])) == [rule.target_tag]
        and not existing.get("sourceTags")
        and not existing.get("disabled", False)
    )
    if same:
        return None
    return {k: wanted[k] for k in ("name", "allowed", "sourceRanges", "targetTags", "disabled")}


def gcloud_create_command(rule: FirewallRule, project: str) -> str:
    """The command that creates ``rule`` by hand."""
    args = [
        "gcloud",
        "compute",
        "firewall-rules",
        "create",
        rule.name,
        f"--project={project}",
        f"--network={_last_segment(rule.network)}",
        "--direction=INGRESS",
        "--action=allow",
        f"--rules=tcp:{rule.port}",
        f"--source-ranges={','.join(rule.source_ranges)}",
        f"--target-tags={rule.target_tag}",
    ]
    return shlex.join(args)


def forbidden_error(rule: FirewallRule, project: str, *, doing: str, detail: str) -> CloudError:
    """The error when the credentials may not create or change the rule."""
    return CloudError(
        f"Compute Engine refused to {doing} the firewall rule {rule.name} in project {project} "
        f"({detail}). LabBatch needs {PERMISSION_HINT}. Alternatively, someone with that role "
        f"can create the rule once by hand: {gcloud_create_command(rule, project)}",
        transient=False,
    )


def wrong_network_error(rule: FirewallRule, project: str, existing_network: str) -> CloudError:
    """The error when a rule of that name exists on another network (a rule cannot move)."""
    return CloudError(
        f"the firewall rule {rule.name} in project {project} is on the network "
        f"{_last_segment(existing_network)}, not on the pool's network "
        f"{_last_segment(rule.network)}; delete it (gcloud compute firewall-rules delete "
        f"{rule.name} --project={project}) and LabBatch will create it again",
        transient=False,
    )
