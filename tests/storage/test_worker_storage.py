"""A real worker agent stages signed-URL files from the GCS emulator, with its input cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from app.protocol import FileTransfer, Heartbeat, JobRun, Outcome
from tests.storage.emulators import Gcs
from tests.storage.helpers import gcs_storage, new_bucket
from tests.worker_helpers import connect, job, start_worker


async def test_jobs_read_and_write_the_bucket_and_the_second_read_is_a_cache_hit(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    data = os.urandom(2 << 20)
    storage.client().bucket(bucket).blob("ref/genome.fa").upload_from_string(data)
    ref = f"gs://{bucket}/ref/genome.fa"
    stat = await storage.stat(ref)

    async def run(job_id: int, source: str = ref) -> JobRun:
        get = await storage.sign_get(source, 600)
        put = await storage.sign_put(f"gs://{bucket}/scratch/1/{job_id}/sum.txt", 600)
        size, md5, key = (
            (stat.size_bytes, stat.md5, stat.cache_key) if source == ref else (None, None, None)
        )
        return job(
            job_id,
            'sha256sum < "$ref" | cut -d" " -f1 > "$sum"',
            inputs=(FileTransfer("in/ref.fa", get.url, "ref", size, key, md5, kind="gcs"),),
            outputs=(FileTransfer("out/sum.txt", put.url, "sum", kind="gcs"),),
            paths={"ref": "in/ref.fa", "sum": "out/sum.txt"},
        )

    worker = await start_worker(tmp_path)
    driver = await connect(worker)
    try:
        await driver.schedule(await run(1))
        first = await driver.result((1, 1, 1))
        await driver.schedule(await run(2), await run(3, f"gs://{bucket}/ref/missing.fa"))
        results = await driver.results((1, 2, 1), (1, 3, 1))
    finally:
        await driver.close()
        await worker.stop()
    second, missing = results[(1, 2, 1)], results[(1, 3, 1)]
    assert first.outcome is Outcome.SUCCESS and second.outcome is Outcome.SUCCESS, first.log
    assert first.staging and second.staging
    assert (first.staging["cache_hits"], first.staging["in_bytes"]) == (0, len(data))
    assert (second.staging["cache_hits"], second.staging["cache_bytes_saved"]) == (1, len(data))
    want = hashlib.sha256(data).hexdigest() + "\n"
    for job_id in (1, 2):
        blob = storage.client().bucket(bucket).blob(f"scratch/1/{job_id}/sum.txt")
        assert blob.download_as_bytes().decode() == want
    assert missing.outcome is Outcome.ERROR
    assert f"gs://{bucket}/ref/missing.fa" in (missing.error or "")
    assert "no such object" in (missing.error or "")
    assert "X-Goog-Signature" not in (missing.error or "") + worker.stderr_text()


async def test_heartbeats_tell_the_driver_which_inputs_the_cache_holds(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    storage.client().bucket(bucket).blob("ref.fa").upload_from_string(b"ACGT" * 1000)
    stat = await storage.stat(f"gs://{bucket}/ref.fa")
    get = await storage.sign_get(f"gs://{bucket}/ref.fa", 600)
    worker = await start_worker(tmp_path, extra_args=["--heartbeat-s", "0.1"])
    driver = await connect(worker)
    try:
        first = await driver.wait_for(Heartbeat)
        assert first.cached == {}  # the whole (empty) cache on a new connection
        t = FileTransfer("in/ref.fa", get.url, "ref", stat.size_bytes, stat.cache_key, stat.md5)
        await driver.schedule(job(1, "true", inputs=(t,), paths={"ref": "in/ref.fa"}))
        assert (await driver.result((1, 1, 1))).outcome is Outcome.SUCCESS
        beat = await driver.wait_for(Heartbeat, lambda b: b.cached is not None)
        assert beat.cached == {stat.cache_key: 4000}
        assert (await driver.wait_for(Heartbeat)).cached is None  # unchanged: not repeated
    finally:
        await driver.close()
        await worker.stop()
