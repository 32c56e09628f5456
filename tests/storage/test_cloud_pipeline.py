"""A pipeline with its files in a bucket runs on a GCE pool of fake VMs against the GCS emulator:
the driver signs each attempt's URLs, the VMs' workers move the bytes, outputs checked by hash."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from app.engine.batches import frontend
from app.engine.workers import pools
from tests.clouds.fake_azure import FakeAzure, serve
from tests.clouds.pool_helpers import azure_pool, fake_gce, gce_pool
from tests.engine_helpers import engine
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
name: in-a-bucket
inputs:
  reference: gs://BUCKET/in/ref.fa
jobs:
  - name: index
    pool: gce
    inputs: {ref: reference}
    outputs: {kmers: .tsv}
    command: |
      grep -v '^>' "$ref" | tr -d '\\n' | fold -w 3 \\
        | sort | uniq -c | awk '{print $2 "\\t" $1}' > "$kmers"
  - name: count
    pool: gce
    inputs: {ref: reference, kmers: index.kmers}
    outputs: {n: .txt}
    command: |
      wc -l < "$kmers" > "$n"
  - name: report
    pool: gce
    inputs: [count.n, index.kmers]
    outputs: {summary: .txt}
    command: |
      echo "3-mers: $(cat "$n"), first: $(head -n 1 {{kmers}})" > "$summary"
outputs:
  - {from: report.summary, to: gs://BUCKET/results/summary.txt}
  - {from: index.kmers, to: gs://BUCKET/results/kmers.tsv}
"""


async def test_a_pipeline_reads_and_writes_a_bucket_on_gce_vms(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    reference = b">chr1\nACGTACGTTT\nGGGACGT\n"
    storage.client().bucket(bucket).blob("in/ref.fa").upload_from_string(reference)
    async with fake_gce(tmp_path) as (_gce, endpoint), engine(f"sqlite:///{tmp_path}/lb.db") as eng:
        pool = gce_pool(endpoint)
        pool.config["storage"] = {"endpoint": gcs_emulator.endpoint}
        await pools.create_pool(eng.db, replace(pool, scratch=f"gs://{bucket}/scratch"))
        batch_id = await eng.submit(PIPELINE.replace("BUCKET", bucket))
        await eng.wait(batch_id, timeout_s=90)
        jobs = await eng.jobs(batch_id)
        assert {j.state for j in jobs.values()} == {"Success"}, {
            name: (j.state, j.error) for name, j in jobs.items()
        }
        index_log = await frontend.job_log(eng.db, batch_id, jobs["index"].job_id)
    blobs = {b.name: b.download_as_bytes() for b in storage.client().list_blobs(bucket)}
    text = b"".join(reference.split(b"\n")[1:3])
    kmers = sorted({text[i : i + 3] for i in range(0, len(text), 3)})
    assert sorted(line.split(b"\t")[0] for line in blobs["results/kmers.tsv"].splitlines()) == kmers
    want = f"3-mers: {len(kmers)}, first: ".encode()
    assert blobs["results/summary.txt"].startswith(want)
    scratch = [name for name in blobs if name.startswith("scratch/")]
    assert any(name.endswith("kmers.tsv") for name in scratch), scratch
    assert hashlib.sha256(blobs["in/ref.fa"]).digest() == hashlib.sha256(reference).digest()
    assert "X-Goog-Signature" not in index_log


async def test_the_same_pipeline_on_azure_vms_against_azurite(
    azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_KEY", AZURITE_KEY)  # account-key SAS (Azurite)
    storage = blob_storage(azurite)
    root = new_container(storage)
    container = storage.service(AZURITE_ACCOUNT).get_container_client(root.rsplit("/", 1)[1])
    reference = b">chr1\nACGTACGTTT\nGGGACGT\n"
    container.upload_blob("in/ref.fa", reference)
    state = FakeAzure(vm_root=tmp_path / "vms")
    async with serve(state) as base_url, engine(f"sqlite:///{tmp_path}/lb.db") as eng:
        pool = azure_pool(
            base_url,
            extra_config={
                "storage": {"endpoint": azurite.account_url, "api_version": AZURITE_API_VERSION}
            },
            name="gce",  # the pipeline's pool name; an Azure pool here
            scratch=f"{root}/scratch",
        )
        await pools.create_pool(eng.db, pool)
        batch_id = await eng.submit(PIPELINE.replace("gs://BUCKET", root))
        await eng.wait(batch_id, timeout_s=90)
        jobs = await eng.jobs(batch_id)
        assert {j.state for j in jobs.values()} == {"Success"}, {
            name: (j.state, j.error) for name, j in jobs.items()
        }
    blobs = {name: container.download_blob(name).readall() for name in container.list_blob_names()}
    assert blobs["results/summary.txt"].startswith(b"3-mers: 6, first: ")
    assert len(blobs["results/kmers.tsv"].splitlines()) == 6
    assert any(name.startswith("scratch/") for name in blobs)
