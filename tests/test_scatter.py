"""Scatter jobs and the `layout` key of the DAG file, through validation, the CLI and the engine."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from app.engine.batches import frontend
from app.models.db import open_database
from app.models.file_layout import layout_to_data, read_layout
from app.models.scatter import MAX_SCATTER_JOBS, Scatter, job_count_text
from app.models.spec import (
    DagFileError,
    JobSpec,
    Problem,
    load_dag_file,
    parse_dag,
    parse_dag_text,
    validate_job_field,
)
from app.models.spec_data import spec_to_dict
from tests.test_cli import labbatch


def parse(text: str) -> tuple[JobSpec, ...]:
    return parse_dag_text(textwrap.dedent(text), source="t.yaml").jobs


def by_name(jobs: tuple[JobSpec, ...]) -> dict[str, JobSpec]:
    return {job.name: job for job in jobs}


def problems_of(text: str, tmp_path: Path) -> list[Problem]:
    path = tmp_path / "dag.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(DagFileError) as info:
        load_dag_file(path)
    return info.value.problems


SCATTER_DAG = """\
    version: 1
    name: scatter
    jobs:
      - name: index
        command: 'true'
      - name: align
        depends_on: [index]
        env: {SAMPLE: overridden, REF: hg38}
        attributes: {step: align}
        scatter: {sample: [a, b, c]}
        command: echo "$SAMPLE"
      - name: merge
        depends_on: [align]
        command: cat
    """


# ---------------------------------------------------------------------------------------------
# Expansion


def test_list_scatter_is_one_job_per_value_with_the_value_in_its_environment() -> None:
    jobs = parse(SCATTER_DAG)
    assert [job.name for job in jobs] == ["index", "align.a", "align.b", "align.c", "merge"]
    b = by_name(jobs)["align.b"]
    assert b.env == {"SAMPLE": "b", "REF": "hg38", "LABBATCH_SCATTER_INDEX": "1"}
    assert b.attributes == {
        "step": "align",
        "labbatch.scatter": "align",
        "labbatch.scatter_value": "b",
    }
    assert b.command == 'echo "$SAMPLE"' and b.scatter is None


def test_scatter_dependencies_apply_to_each_job_and_dependents_wait_for_all() -> None:
    jobs = by_name(parse(SCATTER_DAG))
    assert {jobs[f"align.{s}"].depends_on for s in "abc"} == {("index",)}
    assert jobs["merge"].depends_on == ("align.a", "align.b", "align.c")


def test_scatter_after_scatter_waits_for_every_job_of_the_first() -> None:
    jobs = parse(
        """\
        version: 1
        jobs:
          - {name: a, command: 'true', scatter: {x: [1, 2]}}
          - {name: b, command: 'true', scatter: {y: [p, q, r]}, depends_on: [a]}
        """
    )
    b_jobs = [job for job in jobs if job.name.startswith("b.")]
    assert [job.name for job in b_jobs] == ["b.p", "b.q", "b.r"]
    assert {job.depends_on for job in b_jobs} == {("a.1", "a.2")}


@pytest.mark.parametrize(
    ("scatter", "names", "values"),
    [
        ("{range: [1, 3]}", ["i.1", "i.2", "i.3"], ["1", "2", "3"]),
        ("{range: [0, 10, 5]}", ["i.0", "i.5", "i.10"], ["0", "5", "10"]),
        ("{range: [3, -1, -2]}", ["i.3", "i.1", "i.-1"], ["3", "1", "-1"]),
        ("[0.5, true, x]", ["i.0.5", "i.true", "i.x"], ["0.5", "true", "x"]),
        # a value that cannot be part of a name, or a repeated one: every job is named by index
        ("['a b', c]", ["i.0", "i.1"], ["a b", "c"]),
        ("[x, x]", ["i.0", "i.1"], ["x", "x"]),
    ],
)
def test_scatter_forms_names_and_values(scatter: str, names: list[str], values: list[str]) -> None:
    jobs = parse(f"version: 1\njobs: [{{name: i, command: 'true', scatter: {{i: {scatter}}}}}]\n")
    assert [job.name for job in jobs] == names
    assert [job.env["I"] for job in jobs] == values
    assert [job.env["LABBATCH_SCATTER_INDEX"] for job in jobs] == list(map(str, range(len(names))))


def test_file_scatter_reads_non_empty_lines_next_to_the_dag_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "samples.txt").write_text("s1\n\n  s2  \r\n\ns3\n")
    dag = tmp_path / "dag.yaml"
    dag.write_text(
        "version: 1\njobs:\n"
        "  - {name: count, command: 'true', scatter: {sample: {file: samples.txt}}}\n"
    )
    monkeypatch.chdir(tmp_path.parent)  # the path is the DAG file's, not the working directory's
    jobs = load_dag_file(dag).jobs
    assert [(job.name, job.env["SAMPLE"]) for job in jobs] == [
        ("count.s1", "s1"),
        ("count.s2", "s2"),
        ("count.s3", "s3"),
    ]


def test_unexpanded_spec_keeps_one_job_per_node_and_round_trips(tmp_path: Path) -> None:
    (tmp_path / "samples.txt").write_text("x\ny\n")
    text = textwrap.dedent(SCATTER_DAG) + (
        "  - {name: per-file, command: 'true', scatter: {s: {file: samples.txt}}}\n"
        "  - {name: per-i, command: 'true', scatter: {i: {range: [1, 9, 4]}}}\n"
    )
    source = str(tmp_path / "dag.yaml")
    nodes = parse_dag_text(text, source=source, expand_scatter=False)
    scatters = {job.name: job.scatter for job in nodes.jobs}
    assert scatters == {
        "index": None,
        "align": Scatter("sample", ("a", "b", "c")),
        "merge": None,
        "per-file": Scatter("s", ("x", "y"), file="samples.txt"),
        "per-i": Scatter("i", ("1", "5", "9"), range=(1, 9, 4)),
    }
    assert job_count_text(nodes.jobs) == "10 jobs (5 before scatter)"
    written = spec_to_dict(nodes)
    assert written["jobs"][3]["scatter"] == {"s": {"file": "samples.txt"}}
    assert written["jobs"][4]["scatter"] == {"i": {"range": [1, 9, 4]}}
    assert parse_dag(written, source=source, expand_scatter=False) == nodes
    expanded = parse_dag_text(text, source=source)
    assert job_count_text(expanded.jobs) == "10 jobs (5 before scatter)"
    assert parse_dag(written, source=source) == expanded


def test_expanded_spec_is_written_as_plain_jobs_that_parse_the_same(tmp_path: Path) -> None:
    spec = parse_dag_text(textwrap.dedent(SCATTER_DAG), source="t.yaml")
    data = spec_to_dict(spec)
    assert all("scatter" not in job for job in data["jobs"])
    copy = tmp_path / "copy.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_dag_file(copy) == dataclasses.replace(spec, source=str(copy))


def test_a_file_without_scatter_counts_its_jobs_plainly() -> None:
    assert job_count_text(parse("version: 1\njobs: [{name: a, command: 'true'}]\n")) == "1 jobs"


# ---------------------------------------------------------------------------------------------
# Problems


JOB = "version: 1\njobs:\n  - name: a\n    command: 'true'\n"


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        ("    scatter: {i: {range: [5, 1]}}\n", 5, "'i': range: [5, 1] is empty"),
        ("    scatter: {i: {range: [1, 5, 0]}}\n", 5, "the step must not be 0"),
        ("    scatter: {i: {range: [1, x]}}\n", 5, "expected [start, end] or [start, end, step]"),
        ("    scatter: {s: []}\n", 5, "'s': the list of values is empty"),
        (
            "    scatter:\n      s: [x]\n      t: [y]\n",
            5,
            "exactly one name to scatter over, got 2",
        ),
        ("    scatter: {}\n", 5, "exactly one name to scatter over, got 0"),
        (
            "    scatter:\n      s:\n        - x\n        - {k: v}\n",
            8,
            "value #2: expected a string",
        ),
        ("    scatter:\n      s:\n        file: gone.txt\n", 7, "cannot read the values file"),
        ("    scatter: {s: {lines: x.txt}}\n", 5, "unknown key 'lines'"),
        ("    scatter: {s: 3}\n", 5, "expected a list of values, {range: [start, end]} or"),
        ("    scatter: {sample-id: [x]}\n", 5, "'sample-id' cannot name an environment variable"),
        ("    scatter: {labbatch_job: [x]}\n", 5, "is reserved"),
        (
            "    scatter: {i: {range: [1, 1000000]}}\n",
            5,
            "1,000,000 values; a scatter makes at most",
        ),
    ],
)
def test_scatter_problems_name_file_line_job_and_field(
    tmp_path: Path, lines: str, line: int, message: str
) -> None:
    (problem,) = problems_of(JOB + lines, tmp_path)
    assert (problem.line, problem.job, problem.field) == (line, "a", "scatter")
    assert message in problem.message
    assert str(problem).startswith(f"{tmp_path / 'dag.yaml'}:{line}: job 'a': field 'scatter': ")


def test_missing_values_file_is_named_with_its_path(tmp_path: Path) -> None:
    (problem,) = problems_of(JOB + "    scatter: {s: {file: lists/samples.txt}}\n", tmp_path)
    assert str(tmp_path / "lists" / "samples.txt") in problem.message


def test_empty_values_file_and_too_many_lines(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "big.txt").write_text("x\n" * (MAX_SCATTER_JOBS + 1))
    problems = problems_of(
        JOB
        + "    scatter: {s: {file: empty.txt}}\n"
        + "  - {name: b, command: 'true', scatter: {s: {file: big.txt}}}\n",
        tmp_path,
    )
    assert [(p.job, p.field) for p in problems] == [("a", "scatter"), ("b", "scatter")]
    assert "has no values (no non-empty lines)" in problems[0].message
    assert "100,001 lines" in problems[1].message


def test_expanded_names_that_clash_are_a_problem(tmp_path: Path) -> None:
    problems = problems_of(
        """\
        version: 1
        jobs:
          - {name: a.x, command: 'true'}
          - {name: a, command: 'true', scatter: {s: [x, y]}}
          - {name: b, command: 'true', scatter: {s: [x]}}
          - {name: b.x, command: 'true', scatter: {s: [q]}}
          - {name: d.x, command: 'true', scatter: {s: [q]}}
          - {name: d, command: 'true', scatter: {s: [x.q, r]}}
        """,
        tmp_path,
    )
    assert [(p.line, p.job, p.field, p.message) for p in problems] == [
        (4, "a", "scatter", "1 of its jobs' names are taken: 'a.x' is the name of job 'a.x'"),
        (5, "b", "scatter", "1 of its jobs' names are taken: 'b.x' is the name of job 'b.x'"),
        (
            8,
            "d",
            "scatter",
            "1 of its jobs' names are taken: 'd.x.q' is the name of a job of scatter 'd.x'",
        ),
    ]


def test_scatter_cannot_be_a_default(tmp_path: Path) -> None:
    (problem,) = problems_of(
        "version: 1\ndefaults: {scatter: {s: [x]}}\njobs: [{name: a, command: 'true'}]\n",
        tmp_path,
    )
    assert (problem.line, problem.field) == (2, "scatter")
    assert "cannot be set in defaults" in problem.message


def test_update_scatter_may_not_reuse_existing_names() -> None:
    with pytest.raises(DagFileError) as info:
        parse_dag_text(
            "version: 1\njobs: [{name: a, command: 'true', scatter: {s: [x]}}]\n",
            source="t.yaml",
            existing_jobs=["a.x"],
        )
    assert "'a.x' is the name of a job already in the batch" in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        {"sample": ["a", "b"]},
        {"i": {"range": [1, 10]}},
        {"i": {"range": [1, 10, 2]}},
        {"sample": {"file": "not/read/here.txt"}},  # read only with the whole file
        None,
    ],
)
def test_validate_job_field_accepts_scatter(value: object) -> None:
    assert validate_job_field("scatter", value) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["a"], "expected a mapping of one name to its values, like {sample: [a, b]}, got a list"),
        ({"s": [], "t": [1]}, "give exactly one name to scatter over, got 2 (s, t)"),
        ({"s": [[1]]}, "'s': value #1: expected a string or a number, got a list"),
        ({"s": {"range": [2, 1]}}, "'s': range: [2, 1] is empty: count down with a negative step"),
        ({"s": {"file": ""}}, "'s': file: expected a file name (a non-empty string), got ''"),
    ],
)
def test_validate_job_field_refuses_scatter(value: object, message: str) -> None:
    assert validate_job_field("scatter", value) == message


# ---------------------------------------------------------------------------------------------
# layout


def test_layout_is_read_for_the_canvas_and_written_back() -> None:
    data = {"layout": {"a": [10, 20.5], "b": [1, "x"], "c": 3, 7: [1, 2]}}
    assert read_layout(data) == {"a": (10.0, 20.5)}
    assert read_layout({"jobs": []}) == {} and read_layout(None) == {}
    assert layout_to_data({"a": (10.0, 20.5)}) == {"a": [10, 20.5]}


def test_bad_layout_entries_of_jobs_are_problems_others_are_ignored(tmp_path: Path) -> None:
    problems = problems_of(
        JOB + "layout:\n  a: [1, up]\n  renamed: whatever\n  b: [1, 2, 3]\n", tmp_path
    )
    assert [(p.line, p.job, p.field) for p in problems] == [(6, "a", "layout")]
    assert "expected a position [x, y] of two numbers, got 'up'" in problems[0].message
    (problem,) = problems_of(JOB + "layout: [a, 1, 2]\n", tmp_path)
    assert (problem.line, problem.field) == (5, "layout")


# ---------------------------------------------------------------------------------------------
# The CLI and the engine


def test_cli_validates_layout_and_scatter(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(textwrap.dedent(SCATTER_DAG) + "layout: {index: [0, 0], align: [240, 0]}\n")
    result = labbatch("validate", str(good))
    assert result.returncode == 0, result.stderr
    assert "5 jobs" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(JOB + "    scatter: {s: []}\nlayout: {a: [0, zero]}\n")
    result = labbatch("validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}:5: job 'a': field 'scatter': 's': the list of values is empty" in result.stderr
    assert f"{bad}:6: job 'a': field 'layout': expected a position" in result.stderr


def test_cli_runs_a_scatter_and_the_merge_sees_every_output(tmp_path: Path) -> None:
    (tmp_path / "samples.txt").write_text("s1\ns2\ns3\n")
    merged = tmp_path / "merged.txt"
    dag = tmp_path / "dag.yaml"
    dag.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            name: scatter-run
            jobs:
              - name: count
                scatter: {{sample: {{file: samples.txt}}}}
                command: echo "$SAMPLE $LABBATCH_SCATTER_INDEX" > "$LABBATCH_BATCH_DIR/$SAMPLE.out"
              - name: merge
                depends_on: [count]
                command: cat "$LABBATCH_BATCH_DIR"/*.out > {merged}
            """
        )
    )
    result = labbatch("run", str(dag), "--db", f"sqlite:///{tmp_path / 'cli.db'}", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["state"] == "success"
    assert [job["name"] for job in body["jobs"]] == ["count.s1", "count.s2", "count.s3", "merge"]
    assert merged.read_text() == "s1 0\ns2 1\ns3 2\n"


async def test_scatter_attributes_come_back_with_the_job(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'engine.db'}")
    try:
        spec = parse_dag_text(textwrap.dedent(SCATTER_DAG), source="t.yaml")
        batch_id = await frontend.submit_batch(db, spec, user="tester")
        detail = await frontend.job_detail(db, batch_id, "align.c")
        merge = await frontend.job_detail(db, batch_id, "merge")
    finally:
        await db.close()
    assert detail.spec["attributes"]["labbatch.scatter"] == "align"
    assert detail.spec["attributes"]["labbatch.scatter_value"] == "c"
    assert detail.spec["env"]["SAMPLE"] == "c"
    assert detail.depends_on == ["index"]
    assert merge.depends_on == ["align.a", "align.b", "align.c"]
