"""`labbatch files` sizes cloud files and `labbatch get` copies one here, through the SDKs
(against the GCS emulator and Azurite), and both say what to do when credentials are missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from app.engine.batches import file_store, frontend
from app.engine.workers import pools
from app.engine.workers.pools import PoolConfig
from app.models.db import open_database
from app.models.spec import parse_dag_text
from tests.clouds.pool_helpers import azure_pool, gce_pool
from tests.engine_helpers import USER
from tests.storage.emulators import (
    AZURITE_ACCOUNT,
    AZURITE_API_VERSION,
    AZURITE_KEY,
    Azurite,
    Gcs,
)
from tests.storage.helpers import blob_storage, gcs_storage, new_bucket, new_container

pytestmark = pytest.mark.timeout(120)

PIPELINE = """
version: 1
name: sizes
jobs:
  - name: index
    pool: POOL
    outputs: {kmers: .tsv, log: null}
    command: "true"
outputs:
  - {from: index.kmers, to: ROOT/results/kmers.tsv}
"""


def labbatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
    )


async def _submitted(db_url: str, pool: PoolConfig, root: str) -> list[file_store.StoredFile]:
    """A batch of one job on ``pool`` (not run), and its files as listed before any exist."""
    db = await open_database(db_url)
    try:
        await pools.create_pool(db, pool)
        text = PIPELINE.replace("POOL", pool.name).replace("ROOT", root)
        batch_id = await frontend.submit_batch(db, parse_dag_text(text, source="p.yaml"), user=USER)
        assert batch_id == 1
        return await file_store.batch_files(db, batch_id)
    finally:
        await db.close()


def _object(location: str, root: str) -> str:
    return location.removeprefix(root + "/")


async def test_gcs_files_show_sizes_and_get_copies_one_here(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    root = f"gs://{bucket}"
    pool = gce_pool("http://127.0.0.1:9")
    pool.config["storage"] = {"endpoint": gcs_emulator.endpoint}
    db = f"sqlite:///{tmp_path}/lb.db"
    listed = await _submitted(db, replace(pool, scratch=f"{root}/scratch"), root)
    kmers = next(f for f in listed if f.name == "kmers" and f.kept)
    assert kmers.where.startswith(f"{root}/scratch/1/1/") and kmers.size_bytes is None
    data = b"ACG\t2\nCGT\t1\n" * 1000
    for where in (kmers.where, f"{root}/results/kmers.tsv"):
        storage.client().bucket(bucket).blob(_object(where, root)).upload_from_string(data)

    shown = labbatch("files", "--db", db, "1", "--json")
    assert shown.returncode == 0, shown.stderr
    sizes = {(f["name"], f["kept"]): f["size_bytes"] for f in json.loads(shown.stdout)}
    assert sizes == {("kmers", True): len(data), ("log", True): None, ("kmers", False): len(data)}
    table = labbatch("files", "--db", db, "1")
    assert (
        f"11.72KiB  {kmers.where}" in table.stdout and f"-  {root}/scratch/1/1/log" in table.stdout
    )

    dest = tmp_path / "got" / "kmers.tsv"
    got = labbatch("get", "--db", db, "1", "index.kmers", str(dest))
    assert got.returncode == 0, got.stderr
    assert dest.read_bytes() == data and got.stdout.strip() == str(dest)
    assert not dest.with_name("kmers.tsv.part").exists()
    absent = labbatch("get", "--db", db, "1", "index.log", str(tmp_path / "log"))
    assert absent.returncode == 1 and "is not there: the job has not succeeded yet" in absent.stderr


async def test_gcs_without_credentials_says_how_to_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_credentials = {
        "GOOGLE_APPLICATION_CREDENTIALS": "",
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),  # no application-default login here
        "NO_GCE_CHECK": "True",  # and no metadata server to ask
    }
    for name, value in no_credentials.items():
        monkeypatch.setenv(name, value)
    pool = replace(gce_pool("http://127.0.0.1:9"), scratch="gs://lab-scratch-x/scratch")
    db = f"sqlite:///{tmp_path}/lb.db"
    listed = await _submitted(db, pool, "gs://lab-results-x")
    assert [f.size_bytes for f in listed] == [None, None, None]
    assert all("gcloud auth application-default login" in (f.size_error or "") for f in listed)
    shown = labbatch("files", "--db", db, "1", env=no_credentials)
    assert shown.returncode == 0, shown.stderr
    assert "?" in shown.stdout
    assert "gcloud auth application-default login" in shown.stderr
    got = labbatch("get", "--db", db, "1", "index.kmers", str(tmp_path / "k"), env=no_credentials)
    assert got.returncode == 1
    assert "no usable Google credentials; run `gcloud auth application-default login`" in (
        got.stderr
    )
    assert "Traceback" not in got.stderr + shown.stderr


async def test_azure_files_show_sizes_and_get_copies_one_here(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", AZURITE_KEY)  # account-key access (Azurite)
    storage = blob_storage(azurite)
    root = new_container(storage)
    pool = azure_pool(
        "http://127.0.0.1:9",
        extra_config={
            "storage": {"endpoint": azurite.account_url, "api_version": AZURITE_API_VERSION}
        },
        scratch=f"{root}/scratch",
    )
    db = f"sqlite:///{tmp_path}/lb.db"
    listed = await _submitted(db, pool, root)
    kmers = next(f for f in listed if f.name == "kmers" and f.kept)
    data = os.urandom(300_000)
    container = storage.service(AZURITE_ACCOUNT).get_container_client(root.rsplit("/", 1)[1])
    # the canonical https:// form of the az:// scratch
    container.upload_blob(kmers.where.split(f"{container.container_name}/", 1)[1], data)
    key = {"AZURE_STORAGE_KEY": AZURITE_KEY}  # account-key access (Azurite)

    shown = labbatch("files", "--db", db, "1", "index", "--json", env=key)
    assert shown.returncode == 0, shown.stderr
    sizes = {f["name"]: f["size_bytes"] for f in json.loads(shown.stdout) if f["kept"]}
    assert sizes == {"kmers": len(data), "log": None}
    got = labbatch("get", "--db", db, "1", "index.kmers", str(tmp_path / "here") + "/", env=key)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "here" / os.path.basename(kmers.where)).read_bytes() == data
