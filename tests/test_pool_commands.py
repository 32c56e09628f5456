"""`labbatch pool create|set|show` for GCE and Azure pools, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import labbatch

SUBNET = (
    "/subscriptions/sub-1/resourceGroups/rg-lab/providers/Microsoft.Network/"
    "virtualNetworks/vnet-lab/subnets/workers"
)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'pools.db'}"


def ok(db: str, *args: str) -> str:
    result = labbatch(*args, "--db", db)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def refused(db: str, *args: str) -> str:
    """Run a command that must fail cleanly; returns its message."""
    result = labbatch(*args, "--db", db)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    return result.stderr


def pool_names(db: str) -> list[str]:
    return [p["name"] for p in json.loads(ok(db, "pool", "list", "--json"))]


def test_create_a_gce_pool_from_the_command_line(db: str) -> None:
    out = ok(
        db, "pool", "create", "gce", "--cloud", "gcp", "--project", "lab-project",
        "--zones", "us-central1-a,us-central1-b", "--machine-type", "n2-standard-8", "--spot",
        "--max-instances", "50", "--allow-from", "203.0.113.7", "--api-endpoint",
        "http://127.0.0.1:9",
    )  # fmt: skip
    assert "gce (gcp): 0 live of max 50 workers x 8 cores" in out
    shown = json.loads(ok(db, "pool", "show", "gce", "--json"))
    assert shown["preemptible"] is True
    assert shown["boot_time_s"] == 90.0  # what the autoscaler plans a VM's boot over
    assert shown["machine_type"] == "n2-standard-8"
    assert shown["regions"] == ["us-central1"]
    assert shown["config"]["zones"] == ["us-central1-a", "us-central1-b"]
    assert shown["config"]["allow_from"] == ["203.0.113.7/32"] or shown["config"]["allow_from"] == [
        "203.0.113.7"
    ]
    text = ok(db, "pool", "show", "gce")
    assert "n2-standard-8 in us-central1" in text and "project: lab-project" in text

    ok(db, "pool", "set", "gce", "--allow-from", "198.51.100.0/24", "--zones", "europe-west4-a")
    changed = json.loads(ok(db, "pool", "show", "gce", "--json"))
    assert changed["config"]["project"] == "lab-project"  # merged, not replaced
    assert changed["config"]["zones"] == ["europe-west4-a"]


def test_create_an_azure_pool_with_a_key_file(db: str, tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3Nza lab@desk\n")
    out = ok(
        db, "pool", "create", "az", "--cloud", "azure", "--subscription", "sub-1",
        "--resource-group", "rg-lab", "--location", "westeurope", "--vm-size",
        "Standard_D4s_v5", "--subnet-id", SUBNET, "--ssh-public-key", str(key),
        "--allow-from", "203.0.113.7/32", "--max-instances", "4",
    )  # fmt: skip
    assert "az (azure): 0 live of max 4 workers x 4 cores" in out
    shown = json.loads(ok(db, "pool", "show", "az", "--json"))
    assert shown["config"]["ssh_public_key"] == "ssh-ed25519 AAAAC3Nza lab@desk"
    assert shown["machine_type"] == "Standard_D4s_v5" and shown["regions"] == ["westeurope"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cloud", "gcp", "--zones", "us-central1-a", "--machine-type", "n2-standard-4",
          "--allow-from", "203.0.113.7"], "project"),
        (["--cloud", "gcp", "--project", "p", "--zones", "us-central1-a", "--machine-type",
          "n2-standard-4", "--allow-from", "not-an-address"], "allow_from"),
        (["--cloud", "gcp", "--project", "p", "--zones", "us-central1-a", "--machine-type",
          "custom-odd", "--allow-from", "203.0.113.7"], "--worker-cores"),
        (["--project", "p"], "add --cloud gcp or --cloud azure"),
        (["--cloud", "azure", "--subscription", "s", "--resource-group", "g", "--location",
          "westeurope", "--vm-size", "Standard_D4s_v5", "--allow-from", "203.0.113.7",
          "--ssh-public-key", "ssh-ed25519 AAAA"], "subnet_id"),
        (["--cloud", "azure", "--ssh-public-key", "/no/such/key.pub"], "--ssh-public-key"),
        (["--cloud", "gcp", "--project", "p", "--zones", "us-central1-a", "--machine-type",
          "n2-standard-4", "--allow-from", "203.0.113.7", "--api-endpoint",
          "http://compute.example.com"], "api_endpoint"),
    ],
)  # fmt: skip
def test_bad_cloud_settings_are_refused_and_store_nothing(
    db: str, args: list[str], message: str
) -> None:
    error = refused(db, "pool", "create", "bad", *args)
    assert message in error
    assert "bad" not in pool_names(db)


def test_a_cloud_pools_boot_deadline_is_set_on_create_and_changed_with_set(db: str) -> None:
    ok(
        db, "pool", "create", "gce", "--cloud", "gcp", "--project", "lab-project",
        "--zones", "us-central1-a", "--machine-type", "e2-standard-2", "--allow-from",
        "203.0.113.7",
    )  # fmt: skip
    assert json.loads(ok(db, "pool", "show", "gce", "--json"))["boot_deadline_s"] == 600.0
    message = refused(db, "pool", "set", "gce", "--boot-deadline", "0")
    assert "boot deadline must be more than 0 seconds" in message
    ok(db, "pool", "set", "gce", "--boot-deadline", "900")
    assert "(deadline 15m)" in ok(db, "pool", "show", "gce")
