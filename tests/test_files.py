"""Files between jobs, end to end on the local pool with real worker processes."""

from __future__ import annotations

from pathlib import Path

from app.engine.batches import frontend
from app.models.spec import parse_dag_text
from tests.engine_helpers import USER, engine


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
