"""Staging on the worker: the wire form of files, names in the command, links and copies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine.batches import frontend
from app.protocol import Completed, FileTransfer, JobResult, JobRun, Outcome, Schedule, decode
from app.worker.staging import file_env, substitute
from tests.engine_helpers import engine
from tests.test_files import sqlite_url, submit

SHM = Path("/dev/shm")


def test_files_travel_in_schedule_and_completed_frames() -> None:
    run = JobRun(
        batch_id=1,
        job_id=2,
        attempt=1,
        name="call",
        command="x",
        cores_mcpu=1000,
        inputs=(FileTransfer(local="in/ref.fa", url="file:///d/ref%20x.fa", name="ref"),),
        outputs=(
            FileTransfer(local="out/v.vcf", url="file:///s/1/2/v.vcf", name="v.vcf", kind="file"),
        ),
        paths={"ref": "in/ref.fa", "v": "out/v", "v.vcf": "out/v.vcf"},
    )
    assert decode(Schedule(jobs=[run]).to_json()) == Schedule(jobs=[run])
    staging = {"in_bytes": 10, "in_s": 0.01, "linked_bytes": 10, "copied_bytes": 0}
    result = JobResult(1, 2, 1, Outcome.SUCCESS, 0, 1.0, 2.0, staging=staging)
    assert decode(Completed(jobs=[result]).to_json()) == Completed(jobs=[result])
    # a frame of an older driver or worker, without the new fields, still reads
    old = '{"type":"schedule","jobs":[{"batch_id":1,"job_id":2,"attempt":1,"name":"a",'
    old += '"command":"x","cores_mcpu":1000}]}'
    message = decode(old)
    assert isinstance(message, Schedule)
    assert (message.jobs[0].inputs, message.jobs[0].paths) == ((), {})


def test_names_in_the_command_become_absolute_paths() -> None:
    paths = {"ref": "in/ref.fa", "vcf": "out/vcf", "vcf.tbi": "out/vcf.vcf.gz.tbi"}
    command = "tool {{ref}} -o {{vcf}}.vcf.gz --tbi {{vcf.tbi}} {{other}} {{ ref }} ${ref}"
    assert substitute(command, paths, "/w") == (
        "tool /w/in/ref.fa -o /w/out/vcf.vcf.gz --tbi /w/out/vcf.vcf.gz.tbi {{other}} "
        "{{ ref }} ${ref}"
    )
    run = JobRun(1, 1, 1, "a", "x", 1000, paths=paths)
    assert file_env(run, "/w") == {
        "ref": "/w/in/ref.fa",
        "vcf": "/w/out/vcf",
        "vcf_tbi": "/w/out/vcf.vcf.gz.tbi",
    }


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A directory on another file system than the data dir (tmpfs), removed afterwards."""
    if not SHM.is_dir():
        pytest.skip("no /dev/shm")
    path = SHM / f"labbatch-test-{uuid.uuid4().hex}"
    path.mkdir()
    yield path
    for child in sorted(path.rglob("*"), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()


async def test_files_on_another_file_system_are_copied(tmp_path: Path, shm_dir: Path) -> None:
    (shm_dir / "in.txt").write_text("x" * 1000)
    async with engine(sqlite_url(tmp_path)) as eng:
        batch_id = await submit(
            eng,
            f"""
            version: 1
            inputs: {{data: "{shm_dir}/in.txt"}}
            jobs:
              - {{name: a, inputs: [data], outputs: [o], command: 'cp "$data" "$o"'}}
            outputs: [{{from: a.o, to: "{shm_dir}/result/o.txt"}}]
            """,
            tmp_path,
        )
        assert (await eng.wait(batch_id)).state == "success"
        assert (shm_dir / "result" / "o.txt").read_text() == "x" * 1000
        staging = (await frontend.job_detail(eng.db, batch_id, "a")).attempts[-1].staging
        assert staging is not None
        # in: copied from tmpfs; out: linked into scratch, copied to tmpfs
        assert (staging["copied_bytes"], staging["linked_bytes"]) == (2000, 1000)
