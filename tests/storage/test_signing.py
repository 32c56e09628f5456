"""The driver signs each attempt's cloud files just before sending it (GCS emulator)."""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace

from app.clouds.storage import storage_problems
from app.engine.batches.signing import PoolStorages, Signer
from app.protocol import FileTransfer, JobRun
from tests.storage.emulators import Gcs
from tests.storage.helpers import gcs_storage, new_bucket


def _run(*inputs: FileTransfer, outputs: tuple[FileTransfer, ...] = ()) -> JobRun:
    return JobRun(1, 7, 1, "j", "true", 100, inputs=inputs, outputs=outputs, timeout_s=60)


async def test_cloud_locations_become_signed_urls_with_their_stat(gcs_emulator: Gcs) -> None:
    bucket = new_bucket(gcs_storage(gcs_emulator))
    gcs_storage(gcs_emulator).client().bucket(bucket).blob("ref.fa").upload_from_string(b"ACGT")
    pools = {
        "gce": SimpleNamespace(
            cloud="gcp", config={"project": "test", "storage": {"endpoint": gcs_emulator.endpoint}}
        ),
        "local": SimpleNamespace(cloud="local", config={}),
    }
    signer = Signer(PoolStorages(pools.get))
    run = _run(
        FileTransfer("in/ref.fa", f"gs://{bucket}/ref.fa", "ref"),
        FileTransfer("in/gone.fa", f"gs://{bucket}/gone.fa", "gone"),
        FileTransfer("in/local.txt", "file:///data/local.txt", "local"),
        outputs=(FileTransfer("out/x", f"gs://{bucket}/scratch/1/7/x", "x"),),
    )
    [signed] = await signer.sign_runs("gce", [run])
    ref, gone, local = signed.inputs
    assert ref.url.startswith(f"{gcs_emulator.endpoint}/{bucket}/ref.fa?X-Goog-Algorithm=")
    md5 = base64.b64encode(hashlib.md5(b"ACGT").digest()).decode()
    assert (ref.kind, ref.size_bytes, ref.md5) == ("gcs", 4, md5)
    assert ref.cache_key and ref.cache_key.startswith(f"gs://{bucket}/ref.fa#")
    assert "X-Goog-Signature" in gone.url and gone.cache_key is None
    assert local.url.startswith("error:a cloud VM cannot reach files on the driver's machine")
    [out] = signed.outputs
    assert out.kind == "gcs" and "X-Goog-Expires=" in out.url
    expires = int(out.url.split("X-Goog-Expires=")[1].split("&")[0])
    assert expires == 60 + 6 * 3600  # the command's timeout plus the margin
    # and a signed POST that may start a resumable session of the same object, nothing else
    assert out.resumable_url is not None and out.resumable_url != out.url
    assert out.resumable_url.startswith(f"{gcs_emulator.endpoint}/{bucket}/scratch/1/7/x?")
    assert "X-Goog-SignedHeaders=host%3Bx-goog-resumable" in out.resumable_url
    assert f"X-Goog-Expires={expires}" in out.resumable_url
    [unsigned] = await signer.sign_runs("local", [run])
    assert unsigned.inputs[0].url == (
        f"error:gs://{bucket}/ref.fa: a local pool's workers cannot reach cloud storage; "
        "run the job on a GCE or Azure pool"
    )
    plain = _run(FileTransfer("in/a", "file:///a", "a"))
    assert await signer.sign_runs("local", [plain]) == [plain]


def test_a_cloud_pool_needs_scratch_in_its_own_cloud() -> None:
    assert storage_problems("gcp", "gs://lab-scratch/pool-a", {}) == []
    assert storage_problems("azure", "az://labdata/scratch/a", {}) == []
    assert storage_problems("local", None, {}) == []
    assert "needs a scratch location" in storage_problems("gcp", None, {})[0]
    assert "keeps its files in gs://" in storage_problems("gcp", "az://labdata/con/x", {})[0]
    assert "keeps its files in az://" in storage_problems("azure", "/tmp/scratch", {})[0]
    assert "not a valid bucket name" in storage_problems("gcp", "gs://A/x", {})[0]
    bad = storage_problems("gcp", "gs://ok-bucket/x", {"storage": {"account_key": "x"}})
    assert "unknown storage setting(s) account_key" in bad[0]
