"""Files between jobs, end to end on the local pool with real worker processes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from app.engine.batches import frontend, rerun
from app.models.spec import parse_dag_text
from tests.engine_helpers import USER, engine, kill_worker_running, until


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'labbatch.db'}"


async def submit(eng, text: str, base: Path) -> int:  # type: ignore[no-untyped-def]
    spec = parse_dag_text(text, source=str(base / "pipeline.yaml"))
    batch_id = await frontend.submit_batch(eng.db, spec, user=USER)
    eng.runtime.notify_changed()
    return batch_id


CHAIN = """
version: 1
name: chain
inputs:
  reference: data/ref.fa
  genotypes: {bed: data/geno.bed, bim: data/geno.bim}
jobs:
  - name: index
    inputs: {ref: reference}
    outputs: {idx: .fai, log: null}
    command: |
      tr a-z A-Z < "$ref" > "$idx"
      echo "indexed $(basename $ref)" > "$log"
  - name: call
    inputs: {idx: index.idx, g: genotypes}
    outputs:
      vcf: {vcf: "{root}.vcf.gz", tbi: "{root}.vcf.gz.tbi"}
    command: |
      cat {{idx}} "$g.bed" > {{vcf.vcf}}
      cat "$g_bim" > "$vcf.vcf.gz.tbi"
  - name: report
    inputs: [call.vcf, index.log]
    command: cat "$vcf_vcf" "$vcf_tbi" "$log"
outputs:
  - {from: call.vcf, to: results/new dir/calls}
  - {from: index.idx, to: results/ref.fa.fai}
  - {from: reference, to: results/copy of ref.fa}
"""


async def test_a_chain_passes_files_and_writes_batch_outputs(db_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ref.fa").write_text("acgt\n")
    (data / "geno.bed").write_text("BED\n")
    (data / "geno.bim").write_text("BIM\n")
    async with engine(db_url) as eng:
        batch_id = await submit(eng, CHAIN, tmp_path)
        batch = await eng.wait(batch_id)
        jobs = await eng.jobs(batch_id)
        assert batch.state == "success", {n: (j.state, j.error) for n, j in jobs.items()}
        log = await frontend.job_log(eng.db, batch_id, "report")
        assert log.split() == ["ACGT", "BED", "BIM", "indexed", "ref.fa"]
        results = tmp_path / "results"
        assert (results / "new dir" / "calls.vcf").read_text() == "ACGT\nBED\n"
        assert (results / "new dir" / "calls.tbi").read_text() == "BIM\n"
        assert (results / "ref.fa.fai").read_text() == "ACGT\n"
        assert (results / "copy of ref.fa").read_text() == "acgt\n"
        detail = await frontend.job_detail(eng.db, batch_id, "call")
        staging = detail.attempts[-1].staging
        assert staging is not None
        assert staging["in_bytes"] == len("ACGT\nBED\nBIM\n")
        assert staging["copied_bytes"] == 0  # one file system: links only
        assert staging["out_bytes"] == 2 * len("ACGT\nBED\nBIM\n")


async def test_a_diamond_of_files(tmp_path: Path) -> None:
    async with engine(sqlite_url(tmp_path)) as eng:
        batch_id = await submit(
            eng,
            """
            version: 1
            name: diamond
            jobs:
              - {name: top, outputs: {seed: .txt}, command: "echo seed > $seed"}
              - {name: left, inputs: [top.seed], outputs: [l], command: "rev $seed > $l"}
              - {name: right, inputs: [top.seed], outputs: [r], command: "tr a-z A-Z < $seed > $r"}
              - name: join
                inputs: {a: left.l, b: right.r}
                outputs: {both: .txt}
                command: cat $a $b > {{both}}
            outputs: [{from: join.both, to: out/both.txt}]
            """,
            tmp_path,
        )
        assert (await eng.wait(batch_id)).state == "success"
        assert (tmp_path / "out" / "both.txt").read_text() == "dees\nSEED\n"
        detail = await frontend.job_detail(eng.db, batch_id, "join")
        assert sorted(detail.depends_on) == ["left", "right"]


async def test_a_missing_input_ends_the_job_as_error_naming_the_file(tmp_path: Path) -> None:
    async with engine(sqlite_url(tmp_path)) as eng:
        batch_id = await submit(
            eng,
            """
            version: 1
            inputs: {reads: no/such/reads.fq}
            jobs:
              - {name: align, inputs: [reads], outputs: [bam], command: "cat $reads > $bam"}
              - {name: after, inputs: [align.bam], command: "cat $bam"}
            """,
            tmp_path,
        )
        batch = await eng.wait(batch_id)
        jobs = await eng.jobs(batch_id)
        assert batch.state == "failure"
        assert jobs["align"].state == "Error"
        missing = tmp_path / "no" / "such" / "reads.fq"
        assert jobs["align"].error == (
            f"input `reads`: cannot read {missing}: No such file or directory"
        )
        assert jobs["after"].state == "Cancelled"


async def test_an_output_not_written_fails_the_job(tmp_path: Path) -> None:
    async with engine(sqlite_url(tmp_path)) as eng:
        batch_id = await submit(
            eng,
            """
            version: 1
            jobs:
              - name: lazy
                outputs: {bam: .bam, bai: .bai}
                command: touch "$bai"; echo did not write the bam
            """,
            tmp_path,
        )
        assert (await eng.wait(batch_id)).state == "failure"
        job = (await eng.jobs(batch_id))["lazy"]
        assert (job.state, job.exit_code, job.error) == (
            "Failed",
            0,
            "output `bam` was not written",
        )
        assert "did not write the bam" in await frontend.job_log(eng.db, batch_id, "lazy")


async def test_spaces_and_unicode_in_locations(tmp_path: Path) -> None:
    source = tmp_path / "données brutes" / "échantillon 1.fastq.gz"
    source.parent.mkdir()
    source.write_bytes(b"\x1f\x8b reads")
    async with engine(sqlite_url(tmp_path)) as eng:
        batch_id = await submit(
            eng,
            """
            version: 1
            inputs: {reads: "données brutes/échantillon 1.fastq.gz"}
            jobs:
              - name: count
                inputs: [reads]
                outputs: {n: .txt}
                command: basename "$reads" > "$n"; wc -c < "$reads" >> "$n"
            outputs:
              - {from: count.n, to: "résultats finaux/nombre de lectures.txt"}
              - {from: reads, to: "résultats finaux/copie 1.fastq.gz"}
            """,
            tmp_path,
        )
        assert (await eng.wait(batch_id)).state == "success"
        results = tmp_path / "résultats finaux"
        assert (results / "nombre de lectures.txt").read_text().split() == ["reads.fastq.gz", "8"]
        assert (results / "copie 1.fastq.gz").read_bytes() == b"\x1f\x8b reads"


async def test_a_child_retried_on_another_worker_finds_its_parents_output(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    async with engine(sqlite_url(tmp_path), n_workers=2, cores=1) as eng:

        async def two_workers() -> bool:
            return sum(i.healthy for i in eng.runtime.driver.instances.values()) == 2

        await until(two_workers, what="two healthy workers")
        batch_id = await submit(
            eng,
            f"""
            version: 1
            jobs:
              - {{name: parent, cpu: 1, outputs: {{data: .txt}}, command: "echo payload > $data"}}
              - name: child
                cpu: 1
                inputs: [parent.data]
                command: |
                  echo start >> {starts}
                  if [ "$LABBATCH_ATTEMPT_ID" = 1 ]; then sleep 60; fi
                  cat "$data"
            """,
            tmp_path,
        )

        async def child_runs() -> bool:
            return starts.exists() and await eng.job_state(batch_id, "child") == "Running"

        await until(child_runs, what="the child to run")
        first = await kill_worker_running(eng, batch_id, "child")
        assert (await eng.wait(batch_id, timeout_s=30)).state == "success"
        detail = await frontend.job_detail(eng.db, batch_id, "child")
        assert [a.instance_name == first for a in detail.attempts] == [True, False]
        assert await frontend.job_log(eng.db, batch_id, "child") == "payload\n"


async def test_a_100_mb_file_arrives_intact(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with source.open("wb") as f:
        for i in range(100):
            chunk = os.urandom(1 << 20) if i % 10 == 0 else bytes([i]) * (1 << 20)
            digest.update(chunk)
            f.write(chunk)
    async with engine(sqlite_url(tmp_path)) as eng:
        batch_id = await submit(
            eng,
            """
            version: 1
            inputs: {big: big.bin}
            jobs:
              - {name: copy, inputs: [big], outputs: {out: .bin}, command: 'cp "$big" "$out"'}
              - {name: again, inputs: {x: copy.out}, outputs: {y: .bin}, command: 'cat "$x" > "$y"'}
            outputs: [{from: again.y, to: results/big copy.bin}]
            """,
            tmp_path,
        )
        assert (await eng.wait(batch_id, timeout_s=60)).state == "success"
        result = tmp_path / "results" / "big copy.bin"
        assert hashlib.sha256(result.read_bytes()).hexdigest() == digest.hexdigest()
        staging = (await frontend.job_detail(eng.db, batch_id, "again")).attempts[-1].staging
        assert staging is not None
        mb_100 = 100 << 20
        assert (staging["in_bytes"], staging["out_bytes"]) == (mb_100, 2 * mb_100)
        assert (staging["linked_bytes"], staging["copied_bytes"]) == (3 * mb_100, 0)


async def test_a_retried_child_still_finds_its_parents_output(tmp_path: Path) -> None:
    flag = tmp_path / "second time"
    async with engine(sqlite_url(tmp_path)) as eng:
        batch_id = await submit(
            eng,
            f"""
            version: 1
            jobs:
              - {{name: parent, outputs: {{data: .txt}}, command: "echo payload > $data"}}
              - name: child
                inputs: [parent.data]
                command: test -e '{flag}' && cat "$data"
            """,
            tmp_path,
        )
        assert (await eng.wait(batch_id)).state == "failure"
        flag.touch()
        assert await rerun.retry_batch(eng.db, batch_id, user=USER) == 1
        eng.runtime.notify_changed()
        assert (await eng.wait(batch_id)).state == "success"
        assert await frontend.job_log(eng.db, batch_id, "child") == "payload\n"
        assert (await eng.jobs(batch_id))["parent"].n_attempts == 1  # not run again


async def test_a_cloud_input_on_a_local_pool_ends_error_saying_why(tmp_path: Path) -> None:
    async with engine(sqlite_url(tmp_path)) as eng:
        batch_id = await submit(
            eng,
            """
            version: 1
            inputs: {reads: gs://lab-bucket/runs/r1.bam}
            jobs: [{name: a, inputs: [reads], command: 'cat "$reads"'}]
            """,
            tmp_path,
        )
        assert (await eng.wait(batch_id)).state == "failure"
        job = (await eng.jobs(batch_id))["a"]
        assert job.state == "Error"
        assert job.error == (
            "input `reads`: gs://lab-bucket/runs/r1.bam: a local pool's workers cannot "
            "reach cloud storage; run the job on a GCE or Azure pool"
        )


async def test_a_scatter_jobs_outputs_are_gathered_into_a_directory(tmp_path: Path) -> None:
    async with engine(sqlite_url(tmp_path)) as eng:
        batch_id = await submit(
            eng,
            """
            version: 1
            jobs:
              - name: align
                scatter: {sample: [a, b, c]}
                outputs: {sam: .sam}
                command: echo "reads of $SAMPLE" > "$sam"
              - name: merge
                inputs: {sams: align.sam}
                outputs: {all: .txt}
                command: ls "$sams" > "$all"; cat "$sams"/*.sam >> "$all"
            outputs: [{from: merge.all, to: merged.txt}]
            """,
            tmp_path,
        )
        assert (await eng.wait(batch_id)).state == "success"
        assert (tmp_path / "merged.txt").read_text().splitlines() == [
            "a.sam",
            "b.sam",
            "c.sam",
            "reads of a",
            "reads of b",
            "reads of c",
        ]
        detail = await frontend.job_detail(eng.db, batch_id, "merge")
        assert detail.depends_on == ["align.a", "align.b", "align.c"]
