"""A child job whose spot VM is preempted reruns on a new VM, which reads its parent's output
from the pool's scratch in the (emulated) bucket: the parent does not run again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app.engine.batches import frontend
from app.engine.workers import pools
from tests.clouds.pool_helpers import fake_gce, gce_pool, quick_watch
from tests.engine_helpers import engine, until
from tests.storage.emulators import Gcs
from tests.storage.helpers import gcs_storage, new_bucket

pytestmark = pytest.mark.timeout(120)

PIPELINE = """
version: 1
name: preempted-child
jobs:
  - name: words
    pool: gce
    outputs: {words: .txt}
    command: printf 'spot\\nvms\\nend\\n' > "$words"
  - name: shout
    pool: gce
    inputs: {words: words.words}
    outputs: {upper: .txt}
    command: |
      if [ "$LABBATCH_ATTEMPT_ID" -gt 1 ]; then tr a-z A-Z < "$words" > "$upper"; exit 0; fi
      sleep 60
outputs:
  - {from: shout.upper, to: gs://BUCKET/results/upper.txt}
"""


async def test_a_child_preempted_reruns_on_a_new_vm_from_the_bucket(
    gcs_emulator: Gcs, tmp_path: Path
) -> None:
    storage = gcs_storage(gcs_emulator)
    bucket = new_bucket(storage)
    async with fake_gce(tmp_path) as (gce, endpoint), engine(f"sqlite:///{tmp_path}/lb.db") as eng:
        pool = gce_pool(endpoint, spot=True)
        pool.config["storage"] = {"endpoint": gcs_emulator.endpoint}
        await pools.create_pool(eng.db, replace(pool, scratch=f"gs://{bucket}/scratch"))
        quick_watch(eng, "gcp")
        batch_id = await eng.submit(PIPELINE.replace("BUCKET", bucket))

        async def child_running() -> bool:
            return await eng.job_state(batch_id, "shout") == "Running"

        await until(child_running, timeout_s=60, what="the child to run on the first VM")
        first = str((await frontend.find_job(eng.db, batch_id, "shout")).instance_name)
        gce.preempt(first, "us-central1-a")  # the VM and its disk (its worker cache) are gone

        info = await eng.wait(batch_id, timeout_s=90)
        child = await frontend.job_detail(eng.db, batch_id, "shout")
        assert info.state == "success", child
        parent = await frontend.job_detail(eng.db, batch_id, "words")
    reasons = [a.end_reason for a in child.attempts]
    assert reasons[0] is not None and reasons[0].startswith("preempted"), reasons
    rerun = child.attempts[-1]
    assert rerun.instance_name != first
    assert [a.instance_name for a in parent.attempts] == [first]  # the parent ran once
    words = b"spot\nvms\nend\n"
    assert rerun.staging is not None
    assert rerun.staging["in_bytes"] == len(words) and rerun.staging["cache_hits"] == 0
    blobs = {b.name: b.download_as_bytes() for b in storage.client().list_blobs(bucket)}
    assert blobs["results/upper.txt"] == words.upper()
    assert [n for n in blobs if n.startswith("scratch/") and n.endswith("words.txt")]
