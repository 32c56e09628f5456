"""The Compute Engine pool settings: the module API the engine calls, and credentials choice."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.clouds.base import InstanceRequest
from app.errors import CloudError
from tests.clouds.fake_gce import FakeGce, serving

pytestmark = pytest.mark.timeout(30)
GOOD: dict[str, Any] = {
    "project": "lab-project",
    "zones": ["us-central1-a"],
    "machine_type": "n2-standard-8",
    "allow_from": ["203.0.113.7", "198.51.100.0/24"],
}


def gcp() -> Any:
    """The package as the engine reaches it: through importlib, by name."""
    return importlib.import_module("app.clouds.gcp")


def test_a_good_config_passes_and_gets_the_defaults() -> None:
    gcp().check_config("gpu", GOOD)
    settings = gcp().pool_settings("gpu", GOOD)
    assert settings.worker_port == 8443
    assert settings.network_tag == "labbatch-worker"
    assert settings.use_internal_ip is False
    assert settings.worker_requirement is None
    assert settings.allow_from == ("203.0.113.7/32", "198.51.100.0/24")


def test_every_documented_key_is_accepted() -> None:
    config = {
        **GOOD,
        "boot_disk_gb": 30,
        "image": "projects/p/global/images/lab",
        "network": "global/networks/lab",
        "subnetwork": "regions/us-central1/subnetworks/lab",
        "worker_port": 9443,
        "worker_requirement": "labbatch==0.1.0",
        "network_tag": "lab-workers",
        "use_internal_ip": True,
        "api_endpoint": "https://compute.example.test",
        "storage": {"signing_service_account": "signer@p.iam.gserviceaccount.com"},
    }
    assert set(config) == set(gcp().CONFIG_KEYS)
    gcp().check_config("gpu", config)


def test_unknown_keys_are_refused_with_the_accepted_ones() -> None:
    with pytest.raises(CloudError) as caught:
        gcp().check_config("gpu", {**GOOD, "zone": "us-central1-a"})
    message = str(caught.value)
    assert "pool gpu" in message and "'zone'" in message
    assert all(key in message for key in gcp().CONFIG_KEYS)


@pytest.mark.parametrize(
    ("change", "key", "needle"),
    [
        ({"project": None}, "project", "project ID"),
        ({"zones": None}, "zones", "zones"),
        ({"zones": "us-central1-a"}, "zones", "list"),
        ({"boot_disk_gb": "big"}, "boot_disk_gb", "GB"),
        ({"allow_from": None}, "allow_from", "ifconfig.me"),
        ({"allow_from": []}, "allow_from", "ifconfig.me"),
        ({"allow_from": "203.0.113.7"}, "allow_from", "list"),
        ({"allow_from": ["my-laptop"]}, "allow_from", "'my-laptop'"),
        ({"allow_from": ["203.0.113.7", "2001:db8::1"]}, "allow_from", "IPv4 and IPv6"),
        ({"worker_port": 0}, "worker_port", "1-65535"),
        ({"worker_port": 70000}, "worker_port", "1-65535"),
        ({"worker_port": "8443"}, "worker_port", "1-65535"),
        ({"worker_port": True}, "worker_port", "1-65535"),
        ({"worker_requirement": ""}, "worker_requirement", "non-empty"),
        ({"network_tag": "Lab Workers"}, "network_tag", "lowercase"),
        ({"use_internal_ip": "yes"}, "use_internal_ip", "true or false"),
        ({"api_endpoint": "http://10.1.2.3:8080"}, "api_endpoint", "plain http"),
    ],
)
def test_bad_values_name_the_pool_and_the_key(
    change: dict[str, Any], key: str, needle: str
) -> None:
    config = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(CloudError) as caught:
        gcp().check_config("gpu", config)
    assert not caught.value.transient
    message = str(caught.value)
    assert "pool gpu" in message and f"'{key}'" in message and needle in message


@pytest.mark.parametrize("allow_from", [["2001:db8::1"], ["2001:db8::/32", "::1"]])
def test_ipv6_ranges_alone_are_accepted(allow_from: list[str]) -> None:
    gcp().check_config("gpu", {**GOOD, "allow_from": allow_from})


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeGce, str]]:
    gce = FakeGce(polls_until_done=0)
    async with serving(gce) as endpoint:
        yield gce, endpoint


async def test_make_cloud_talks_to_a_loopback_fake_without_credentials(
    fake: tuple[FakeGce, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no Google credentials anywhere: anonymous ones must be chosen for http://127.0.0.1
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    gce, endpoint = fake
    cloud = gcp().make_cloud({"gpu": {**GOOD, "api_endpoint": endpoint}}.__getitem__)
    try:
        created = await cloud.create_instance(
            InstanceRequest(name="lb-1", pool="gpu", cores_mcpu=1000, token="t")
        )
        assert created.address == "127.0.0.1:8443"
        assert gce.authorizations and set(gce.authorizations) == {None}
    finally:
        await cloud.close()
    assert gce.instances == {}


async def test_missing_application_default_credentials_say_how_to_log_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    cloud = gcp().make_cloud({"gpu": GOOD}.__getitem__)
    try:
        with pytest.raises(CloudError) as caught:
            await cloud.create_instance(
                InstanceRequest(name="lb-1", pool="gpu", cores_mcpu=1000, token="t")
            )
    finally:
        await cloud.close()
    assert not caught.value.transient
    assert "gcloud auth application-default login" in str(caught.value)


async def test_plain_http_to_another_host_is_refused_before_any_request() -> None:
    config = {**GOOD, "api_endpoint": "http://compute.example.test"}
    cloud = gcp().make_cloud({"gpu": config}.__getitem__)
    with pytest.raises(CloudError, match="plain http"):
        await cloud.create_instance(
            InstanceRequest(name="lb-1", pool="gpu", cores_mcpu=1000, token="t")
        )
