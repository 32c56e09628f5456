"""The file model of the DAG format: parsing, every problem at once, and the round trip."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.models.file_plan import plan_files
from app.models.files import OutputShape
from app.models.spec import DagFileError, Problem, parse_dag_text
from app.models.spec_data import spec_to_dict


def problems(text: str) -> list[Problem]:
    with pytest.raises(DagFileError) as caught:
        parse_dag_text(textwrap.dedent(text), source="/lab/p.yaml")
    return caught.value.problems


def located(text: str) -> list[tuple[int | None, str | None, str | None, str]]:
    return [(p.line, p.job, p.field, p.message) for p in problems(text)]


def test_inputs_outputs_and_references_parse_to_a_spec_with_file_dependencies() -> None:
    spec = parse_dag_text(
        textwrap.dedent(
            """
            version: 1
            inputs:
              ref: data/ref.fa
              geno: {bed: /abs/g.bed, bim: "file:///abs/g%20x.bim"}
              remote: gs://my-bucket/path/to/reads.bam
              blob: https://acct01.blob.core.windows.net/cont/a/b.txt
            jobs:
              - {name: align.a, inputs: [ref], outputs: {bam: .bam}, command: x}
              - name: call
                inputs: {bam: align.a.bam, g: geno}
                outputs: {vcf: {vcf: "{root}.vcf.gz", tbi: "{root}.vcf.gz.tbi"}, log: null}
                command: x
            outputs: [{from: call.vcf, to: results/calls}]
            """
        ),
        source="/lab/p.yaml",
    )
    assert spec.inputs["ref"] == "/lab/data/ref.fa"
    assert spec.inputs["geno"] == {"bed": "/abs/g.bed", "bim": "/abs/g x.bim"}
    call = spec.jobs[1]
    assert call.depends_on == ("align.a",)  # the longest job-name prefix wins
    assert call.outputs["vcf"] == OutputShape(
        members={"vcf": "{root}.vcf.gz", "tbi": "{root}.vcf.gz.tbi"}
    )
    assert spec.outputs[0].to == "/lab/results/calls"
    plan = plan_files(spec.jobs, spec.inputs, spec.outputs)["call"]
    assert plan.paths == {
        "bam": "in/bam.bam",
        "g": "in/g",
        "g.bed": "in/g.bed",
        "g.bim": "in/g.bim",
        "vcf": "out/vcf",
        "vcf.vcf": "out/vcf.vcf.gz",
        "vcf.tbi": "out/vcf.vcf.gz.tbi",
        "log": "out/log",
    }
    destinations = [o.destination for o in plan.outputs if o.destination]
    assert destinations == ["/lab/results/calls.vcf", "/lab/results/calls.tbi"]


def test_the_file_model_round_trips(tmp_path: Path) -> None:
    text = """
        version: 1
        inputs: {ref: /d/ref.fa, g: {bed: /d/g.bed}}
        jobs:
          - name: a
            inputs: {r: ref, x: g}
            outputs: {o: .txt, p: null, q: {m: "{root}.m"}}
            command: x
          - {name: b, inputs: [a.o, a.q], command: x}
        outputs: [{from: a.p, to: /r/p}, {from: ref, to: /r/ref.fa}]
    """
    spec = parse_dag_text(textwrap.dedent(text), source="/lab/p.yaml")
    again = parse_dag_text(str(spec_to_dict(spec)).replace("None", "null"), source="/lab/p.yaml")
    assert again == spec


def test_every_file_problem_is_listed_with_line_job_and_field() -> None:
    found = located(
        """
        version: 1
        inputs:
          reference: s3://bucket/ref.fa
          bad_gs: gs://B/x
          bad_az: https://acct.blob.core.windows.net/c
          PATH: x.txt
        jobs:
          - name: a
            inputs: {x: nothere, y: b.nope}
            outputs: {x: null, o: .txt}
            command: x
          - name: b
            env: {out: "1"}
            inputs: {z: a.o}
            outputs: {out: .txt}
            command: x
          - {name: c, outputs: {o: {m: "no-root"}}, command: x}
        outputs:
          - {from: b.out, to: r/x}
          - {from: b.out, to: r/x}
          - {from: d.out, to: r/y}
        """
    )
    messages = "\n".join(m for *_, m in found)
    assert len(found) == 11, messages
    assert found[0][:3] == (4, None, "inputs") and "Amazon S3 is not supported" in found[0][3]
    assert "not a valid bucket name" in messages and "not a valid container name" in messages
    assert "'PATH' would shadow the job environment's $PATH" in messages
    assert (
        10,
        "a",
        "inputs",
        "unknown reference 'nothere': name a batch input or <job>.<output> (batch inputs: none)",
    ) in found
    assert (10, "a", "inputs", "job 'b' has no output 'nope' (its outputs: out)") in found
    assert (10, "a", "inputs", "'x' is both an input and an output of the job") in found
    assert "member 'm': the pattern must contain {root}" in messages
    assert (
        16,
        "b",
        "outputs",
        "output 'out' would shadow the job's env variable 'out': rename one",
    ) in found
    assert (21, None, "outputs", "destination 'r/x' is given twice (outputs #1 too)") in found
    assert next(p[:3] for p in found if "'d.out'" in p[3]) == (22, None, "outputs")


def test_a_cycle_made_through_files_is_refused() -> None:
    found = located(
        """
        version: 1
        jobs:
          - {name: a, inputs: [b.y], outputs: [x], command: x}
          - {name: b, inputs: [a.x], outputs: [y], command: x}
        """
    )
    assert [m for *_, m in found] == ["cycle: a -> b -> a"]


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ("{name: j, inputs: {ref: ref}, outputs: {ref: null}, command: x}", "both an input and"),
        ("{name: j, inputs: [j.o], outputs: [o], command: x}", "cannot read its own output"),
        ("{name: j, outputs: {o: bam}, command: x}", "'bam' is not an extension"),
        ("{name: j, outputs: {LABBATCH_X: null}, command: x}", "would shadow"),
        ("{name: j, outputs: {9x: null}, command: x}", "not a valid file name"),
    ],
)
def test_bad_job_files(job: str, message: str) -> None:
    text = f"""
        version: 1
        inputs: {{ref: /r}}
        jobs:
          - {{name: s, scatter: {{v: [a, b]}}, outputs: [o], command: x}}
          - {job}
    """
    assert any(message in p.message for p in problems(text)), problems(text)


def test_inputs_and_outputs_cannot_be_defaults() -> None:
    found = located("version: 1\ndefaults: {outputs: [o]}\njobs: [{name: a, command: x}]\n")
    assert [m for *_, m in found] == ["cannot be set in defaults: give it on each job"]


def test_a_bad_file_submits_nothing(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    dag = tmp_path / "bad.yaml"
    dag.write_text("version: 1\njobs:\n  - {name: a, inputs: [nope], command: x}\n")
    db = str(tmp_path / "lb.db")
    result = subprocess.run(
        [sys.executable, "-m", "app", "--db", db, "submit", str(dag)],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert result.returncode == 2
    assert f"{dag}:3: job 'a': field 'inputs': unknown reference 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "app", "--db", db, "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert listed.returncode == 0 and listed.stdout.strip() == "", listed.stdout


def test_files_of_an_earlier_update_are_refused_clearly() -> None:
    text = "version: 1\njobs: [{name: b, inputs: [a.out], command: x}]\n"
    with pytest.raises(DagFileError) as caught:
        parse_dag_text(text, source="u.yaml", existing_jobs=["a"])
    assert [p.message for p in caught.value.problems] == [
        "'a.out' is a file of a job added by an earlier update of the batch: "
        "reading those is not supported yet"
    ]
