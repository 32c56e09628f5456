"""Tests of the DAG file format: examples, every class of problem, order, round trips."""

from __future__ import annotations

import dataclasses
import gc
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import networkx as nx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import InvalidInputError
from app.models.spec import (
    BatchSpec,
    DagFileError,
    JobSpec,
    Problem,
    RetryPolicy,
    load_dag_file,
    parse_dag,
    parse_dag_text,
    validate_job_field,
)
from app.models.spec_data import spec_to_dict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GIB = 1024**3


def write(tmp_path: Path, text: str, name: str = "dag.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(DagFileError) as caught:
        load_dag_file(path)
    return caught.value.problems


def the_problem(problems: list[Problem], fragment: str) -> Problem:
    matching = [problem for problem in problems if fragment in problem.message]
    assert len(matching) == 1, [str(problem) for problem in problems]
    return matching[0]


def jobs_by_name(spec: BatchSpec) -> dict[str, JobSpec]:
    return {job.name: job for job in spec.jobs}


# ---------------------------------------------------------------------------------------------
# The examples


def test_diamond_is_in_topological_order() -> None:
    spec = load_dag_file(EXAMPLES / "diamond.yaml")
    assert spec.name == "diamond"
    assert spec.attributes == {"purpose": "example"}
    assert [job.name for job in spec.jobs] == ["prepare", "left", "right", "merge"]
    assert jobs_by_name(spec)["merge"].depends_on == ("left", "right")
    assert spec.source == str(EXAMPLES / "diamond.yaml")


def test_per_sample_applies_defaults() -> None:
    spec = load_dag_file(EXAMPLES / "per-sample.yaml")
    jobs = jobs_by_name(spec)
    assert spec.cancel_after_n_failures == 2
    assert jobs["sample-a"].cores_mcpu == 1000
    assert (jobs["sample-a"].memory_bytes, jobs["sample-a"].memory_class) == (4 * GIB, "standard")
    assert jobs["index"].cores_mcpu == 2000
    assert (jobs["index"].memory_bytes, jobs["index"].memory_class) == (2 * GIB, None)
    assert jobs["sample-c"].timeout_s == 60
    assert jobs["sample-a"].timeout_s is None
    assert jobs["sample-b"].env == {"SAMPLE": "b"}
    assert jobs["cleanup"].always_run


def test_failure_example_report_always_runs() -> None:
    spec = load_dag_file(EXAMPLES / "failure.yaml")
    jobs = jobs_by_name(spec)
    assert spec.name == "failure-propagation"
    assert jobs["report"].always_run
    assert not jobs["flaky"].always_run
    assert [job.name for job in spec.jobs] == ["flaky", "after-flaky", "report", "independent"]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_examples_round_trip(example: Path, tmp_path: Path) -> None:
    spec = load_dag_file(example)
    copy = write(tmp_path, yaml.safe_dump(spec_to_dict(spec), sort_keys=False))
    assert load_dag_file(copy) == dataclasses.replace(spec, source=str(copy))


# ---------------------------------------------------------------------------------------------
# Fields and defaults


def test_every_field_and_the_round_trip(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        name: everything
        attributes: {study: s1, run: 7}
        billing_project: lab
        cancel_after_n_failures: 3
        layout: {nodes: {a: [10, 20]}}
        defaults:
          image: ubuntu:24.04
          env: {SHARED: yes, N: 1}
          attributes: {team: bio}
          preemptible: false
        jobs:
          - name: a
            command: echo a
            env: {N: 2, RATIO: 0.5}
            cpu: 500m
            memory: highmem
            storage: 10Gi
            timeout: 1h30m
            always_run: true
            n_max_attempts: 5
            regions: [us-central1, europe-west1]
            machine_type: n2-standard-4
            pool: big
            attributes: {step: one}
            expected_duration: 20m
            retry: {on: [oom, failure], max: 4, memory_factor: 1.5, fallback_to_standard: true}
          - name: b
            command: echo b
            depends_on: a
            cpu: "4"
            memory: 3000000
            image: null
        """,
    )
    spec = load_dag_file(path)
    assert (spec.name, spec.billing_project, spec.cancel_after_n_failures) == (
        "everything",
        "lab",
        3,
    )
    assert spec.attributes == {"study": "s1", "run": "7"}
    a, b = spec.jobs
    assert a == JobSpec(
        name="a",
        command="echo a",
        image="ubuntu:24.04",
        env={"SHARED": "true", "N": "2", "RATIO": "0.5"},
        cores_mcpu=500,
        memory_bytes=4 * GIB,
        memory_class="highmem",
        storage_bytes=10 * GIB,
        timeout_s=5400.0,
        always_run=True,
        n_max_attempts=5,
        preemptible=False,
        regions=("us-central1", "europe-west1"),
        machine_type="n2-standard-4",
        pool="big",
        attributes={"team": "bio", "step": "one"},
        expected_duration_s=1200.0,
        retry=RetryPolicy(frozenset({"oom", "failure"}), 4, 1.5, 2),
    )
    assert (b.depends_on, b.cores_mcpu, b.memory_bytes, b.memory_class) == (
        ("a",),
        4000,
        3_000_000,
        None,
    )
    assert b.image is None
    assert b.env == {"SHARED": "true", "N": "1"}
    copy = write(tmp_path, yaml.safe_dump(spec_to_dict(spec)), name="copy.yaml")
    assert load_dag_file(copy).jobs == spec.jobs
    assert parse_dag(spec_to_dict(spec), source=str(path)) == spec


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\njobs: [{name: a, command: echo}]\n", name="my-run.yaml")
    assert load_dag_file(path).name == "my-run"


def test_json_file(tmp_path: Path) -> None:
    data = {"version": 1, "jobs": [{"name": "a", "command": "echo"}, {"name": "b", "command": "x",
            "depends_on": ["a"], "cpu": 2, "env": {"N": 1}}]}  # fmt: skip
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data, indent=2))
    spec = load_dag_file(path)
    assert spec.name == "run"
    assert [(job.name, job.cores_mcpu, dict(job.env)) for job in spec.jobs] == [
        ("a", 1000, {}),
        ("b", 2000, {"N": "1"}),
    ]


def test_repeated_dependency_counts_once(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\njobs: [{name: a, command: x}, {name: b, command: x, "
                           "depends_on: [a, a]}]\n")  # fmt: skip
    assert load_dag_file(path).jobs[1].depends_on == ("a",)


def test_command_may_come_from_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ndefaults: {command: make}\njobs: [{name: a}]\n")
    assert load_dag_file(path).jobs[0].command == "make"


# ---------------------------------------------------------------------------------------------
# Every class of problem names the file, the line, the job and the field


JOB_A = "version: 1\njobs:\n  - name: a\n    command: echo\n"

PROBLEM_CASES = [
    # (id, text, fragment of the message, line, job, field)
    ("unknown top key", "version: 1\nnaem: x\njobs: [{name: a, command: x}]\n",
     "unknown key 'naem' (did you mean 'name'?)", 2, None, "naem"),
    ("unknown job key", JOB_A + "    cpus: 2\n",
     "unknown key 'cpus' (did you mean 'cpu'?)", 5, "a", "cpus"),
    ("quoted boolean", JOB_A + "    always_run: 'yes'\n",
     "expected true or false, got 'yes'", 5, "a", "always_run"),
    ("boolean for an int", JOB_A + "    n_max_attempts: true\n",
     "expected a whole number, got true", 5, "a", "n_max_attempts"),
    ("zero attempts", JOB_A + "    n_max_attempts: 0\n", "must be at least 1", 5, "a",
     "n_max_attempts"),
    ("bad cpu", JOB_A + "    cpu: 300m\n", "'300m' is not a valid cpu", 5, "a", "cpu"),
    ("bad memory", JOB_A + "    memory: lots\n", "'lots' is not a valid memory", 5, "a", "memory"),
    ("bad storage", JOB_A + "    storage: ten\n", "'ten' is not a valid size", 5, "a", "storage"),
    ("bad timeout", JOB_A + "    timeout: 5 minutes\n", "is not a valid duration", 5, "a",
     "timeout"),
    ("number for a string", JOB_A + "    image: 3.10\n",
     "expected a string, got the number 3.1 (put it in quotes)", 5, "a", "image"),
    ("empty image", JOB_A + "    image: ''\n", "must not be empty", 5, "a", "image"),
    ("env list value", JOB_A + "    env:\n      A: [1]\n", "'A': expected a string, got a list",
     5, "a", "env"),
    ("env bad name", JOB_A + "    env: {1A: x}\n", "not a valid environment variable name", 5,
     "a", "env"),
    ("empty regions", JOB_A + "    regions: []\n", "expected a non-empty list of region names",
     5, "a", "regions"),
    ("missing name", "version: 1\njobs:\n  - command: echo\n",
     "missing required key 'name'", 3, "#1", "name"),
    ("missing command", "version: 1\njobs:\n  - name: a\n  - name: b\n    command: x\n",
     "missing required key 'command'", 3, "a", "command"),
    ("empty command", "version: 1\njobs:\n  - name: a\n    command: '  '\n",
     "the command is empty", 4, "a", "command"),
    ("duplicate name", JOB_A + "  - name: a\n    command: echo 2\n",
     "duplicate job name 'a' (job #1 has it too)", 5, "a", "name"),
    ("bad name", "version: 1\njobs:\n  - command: x\n    name: bad name\n",
     "'bad name' is not a valid job name", 4, "#1", "name"),
    ("long name", f"version: 1\njobs:\n  - command: x\n    name: {'x' * 101}\n",
     "at most 100 are allowed", 4, "#1", "name"),
    ("unknown dependency", JOB_A + "    depends_on:\n      - ghost\n",
     "depends on unknown job 'ghost'", 6, "a", "depends_on"),
    ("self dependency", JOB_A + "    depends_on: a\n", "a job cannot depend on itself", 5, "a",
     "depends_on"),
    ("dependency not a name", JOB_A + "    depends_on: [1]\n",
     "expected job names, got the number 1", 5, "a", "depends_on"),
    ("cycle", "version: 1\njobs:\n  - {name: a, command: x, depends_on: [c]}\n"
     "  - {name: b, command: x, depends_on: [a]}\n  - {name: c, command: x, depends_on: [b]}\n",
     "cycle: a -> b -> c -> a", 3, "a", "depends_on"),
    ("version missing", "jobs: [{name: a, command: x}]\n", "missing required key 'version'", 1,
     None, "version"),
    ("version 2", "version: 2\njobs: [{name: a, command: x}]\n",
     "unsupported version 2: this LabBatch reads version 1", 1, None, "version"),
    ("version as text", "version: '1'\njobs: [{name: a, command: x}]\n",
     "unsupported version '1'", 1, None, "version"),
    ("top level a list", "- version: 1\n", "got a list", 1, None, None),
    ("empty file", "# nothing\n", "the file is empty", None, None, None),
    ("jobs missing", "version: 1\n", "missing required key 'jobs'", 1, None, "jobs"),
    ("jobs empty", "version: 1\njobs: []\n", "expected a non-empty list of jobs", 2, None, "jobs"),
    ("job not a mapping", "version: 1\njobs:\n  - a\n", "expected a job", 3, "#1", None),
    ("name in defaults", "version: 1\ndefaults:\n  name: x\njobs: [{name: a, command: x}]\n",
     "cannot be set in defaults", 3, None, "name"),
    ("bad default", "version: 1\ndefaults:\n  cpu: 3\njobs: [{name: a, command: x}]\n",
     "3 is not a valid cpu", 3, None, "cpu"),
    ("zero failures", "version: 1\ncancel_after_n_failures: 0\njobs: [{name: a, command: x}]\n",
     "must be at least 1", 2, None, "cancel_after_n_failures"),
    ("yaml syntax", "version: 1\njobs:\n  - name: a\n   command: echo\n", "invalid YAML", 4,
     None, None),
    ("yaml second document", JOB_A + "---\nversion: 1\n", "expected a single document", 5, None,
     None),
    ("yaml unknown tag", JOB_A + "    env: !!python/object:os.system {}\n",
     "invalid YAML", 5, None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "fragment", "line", "job", "field"),
    [case[1:] for case in PROBLEM_CASES],
    ids=[case[0] for case in PROBLEM_CASES],
)
def test_problem_names_file_line_job_and_field(
    tmp_path: Path, text: str, fragment: str, line: int | None, job: str | None, field: str | None
) -> None:
    path = write(tmp_path, text)
    problem = the_problem(problems_of(path), fragment)
    assert (problem.source, problem.line, problem.job, problem.field) == (
        str(path),
        line,
        job,
        field,
    )


def test_json_problems_have_lines(tmp_path: Path) -> None:
    text = """\
        {
          "version": 1,
          "jobs": [
            {"name": "a",
             "command": "x", "cpus": 2}
          ]
        }
        """
    path = write(tmp_path, text, name="dag.json")
    problem = the_problem(problems_of(path), "unknown key 'cpus'")
    assert (problem.line, problem.job, problem.field) == (5, "a", "cpus")


def test_json_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{"version": 1,\n "jobs": [}\n', name="dag.json")
    problem = the_problem(problems_of(path), "invalid JSON")
    assert (problem.source, problem.line) == (str(path), 2)


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    problem = the_problem(problems_of(path), "cannot read the file")
    assert problem.source == str(path)


def test_binary_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "dag.yaml"
    path.write_bytes(b"\xff\xfe\x00version")
    the_problem(problems_of(path), "not UTF-8")


def test_all_problems_of_a_file_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        jobs:
          - name: a
            command: echo
            cpus: 2
          - name: b
            command: echo
            depends_on: [ghost]
          - name: a
            command: echo
            memory: lots
          - command: echo
        """,
    )
    with pytest.raises(DagFileError) as caught:
        load_dag_file(path)
    problems = caught.value.problems
    assert [(problem.line, problem.job, problem.field) for problem in problems] == [
        (5, "a", "cpus"),
        (8, "b", "depends_on"),
        (9, "a", "name"),
        (11, "a", "memory"),
        (12, "#4", "name"),
    ]
    assert isinstance(caught.value, InvalidInputError)
    assert caught.value.exit_code == 2
    assert str(caught.value).splitlines()[0] == (
        f"{path}:5: job 'a': field 'cpus': unknown key 'cpus' (did you mean 'cpu'?)"
    )


def test_dependency_on_a_badly_named_job_is_not_reported_twice(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\njobs:\n  - {name: b@d, command: x}\n"
                           "  - {name: c, command: x, depends_on: [b@d]}\n")  # fmt: skip
    assert [problem.field for problem in problems_of(path)] == ["name"]


def test_unknown_dependency_suggests_a_close_name(tmp_path: Path) -> None:
    path = write(tmp_path, JOB_A + "  - {name: b, command: x, depends_on: [aa]}\n")
    the_problem(problems_of(path), "depends on unknown job 'aa' (did you mean 'a'?)")


def test_every_cycle_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        jobs:
          - {name: x, command: x, depends_on: [y]}
          - {name: y, command: x, depends_on: [x]}
          - {name: a, command: x, depends_on: [c]}
          - {name: b, command: x, depends_on: [a]}
          - {name: c, command: x, depends_on: [b]}
          - {name: after, command: x, depends_on: [c]}
        """,
    )
    messages = [problem.message for problem in problems_of(path)]
    assert messages == ["cycle: x -> y -> x", "cycle: a -> b -> c -> a"]


def test_problems_without_text_have_no_lines() -> None:
    with pytest.raises(DagFileError) as caught:
        parse_dag({"version": 1, "jobs": [{"name": "a"}]}, source="<canvas>")
    assert caught.value.problems == [
        Problem("<canvas>", "missing required key 'command'", None, "a", "command")
    ]


def test_cyclic_collector_is_left_enabled(tmp_path: Path) -> None:
    load_dag_file(EXAMPLES / "diamond.yaml")
    problems_of(write(tmp_path, "version: 2\n"))
    assert gc.isenabled()


# ---------------------------------------------------------------------------------------------
# Order and appended updates


def test_jobs_come_parents_first_and_otherwise_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        jobs:
          - {name: c, command: x, depends_on: [b]}
          - {name: a, command: x}
          - {name: b, command: x, depends_on: [a]}
          - {name: d, command: x}
        """,
    )
    assert [job.name for job in load_dag_file(path).jobs] == ["a", "b", "c", "d"]


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[tuple[int, int]]]:
    """A DAG as jobs in file order and (parent, child) edges, parents not always listed first."""
    n_jobs = draw(st.integers(min_value=1, max_value=25))
    rank = draw(st.permutations(range(n_jobs)))
    pairs = st.tuples(st.integers(0, n_jobs - 1), st.integers(0, n_jobs - 1))
    edges = [(p, c) for p, c in draw(st.lists(pairs, max_size=60)) if rank[p] < rank[c]]
    return [f"j{i}" for i in range(n_jobs)], edges


@settings(max_examples=150, deadline=None)
@given(dags())
def test_order_is_the_lexicographical_topological_sort(
    dag: tuple[list[str], list[tuple[int, int]]],
) -> None:
    names, edges = dag
    jobs = [
        {"name": name, "command": "x", "depends_on": [names[p] for p, c in edges if c == i]}
        for i, name in enumerate(names)
    ]
    spec = parse_dag({"version": 1, "jobs": jobs}, source="<test>")
    graph = nx.DiGraph()
    graph.add_nodes_from(range(len(names)))
    graph.add_edges_from(edges)
    expected = [names[i] for i in nx.lexicographical_topological_sort(graph, key=lambda i: i)]
    assert [job.name for job in spec.jobs] == expected


def test_update_may_depend_on_existing_jobs() -> None:
    text = "version: 1\njobs: [{name: b, command: x, depends_on: [old]}]\n"
    spec = parse_dag_text(text, source="update.yaml", existing_jobs={"old"})
    assert spec.jobs[0].depends_on == ("old",)
    with pytest.raises(DagFileError):
        parse_dag_text(text, source="update.yaml")


def test_update_may_not_reuse_an_existing_name() -> None:
    text = "version: 1\njobs:\n  - {name: old, command: x}\n"
    with pytest.raises(DagFileError) as caught:
        parse_dag_text(text, source="update.yaml", existing_jobs=["old"])
    assert caught.value.problems == [
        Problem("update.yaml", "a job named 'old' already exists in the batch", 3, "old", "name")
    ]


# ---------------------------------------------------------------------------------------------
# One field at a time, for the canvas


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "align-1.b_2"),
        ("command", "echo hi"),
        ("depends_on", "a"),
        ("depends_on", ["a", "b"]),
        ("cpu", 2),
        ("cpu", "500m"),
        ("memory", "highmem"),
        ("memory", "2Gi"),
        ("storage", 0),
        ("timeout", "1h30m"),
        ("timeout", None),
        ("env", {"A": 1, "B": True}),
        ("always_run", True),
        ("n_max_attempts", 1),
        ("regions", ["us-central1"]),
        ("attributes", {"k": "v"}),
        ("expected_duration", 90),
        ("expected_duration", "2h"),
        ("expected_duration", None),
        ("retry", {"on": "failure"}),
        ("retry", {True: ["oom"], "memory_factor": 2}),  # YAML's unquoted on
        ("retry", {"on": ["preemption"], "max": 1, "fallback_to_standard": True}),
        ("retry", None),
    ],
)
def test_validate_job_field_accepts(field: str, value: object) -> None:
    assert validate_job_field(field, value) is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "a b", "'a b' is not a valid job name"),
        ("command", 3, "expected a string (a bash script), got the number 3"),
        ("cpu", "300m", "'300m' is not a valid cpu: use 0.25, 0.5, 1, 2, 4"),
        ("memory", "big", "'big' is not a valid memory"),
        ("timeout", "soon", "'soon' is not a valid duration"),
        ("env", {"A": {"B": 1}}, "'A': expected a string, got a mapping"),
        ("always_run", "true", "expected true or false, got 'true'"),
        ("n_max_attempts", 1.5, "expected a whole number, got the number 1.5"),
        ("cpus", 2, "unknown key 'cpus' (did you mean 'cpu'?)"),
        ("expected_duration", "soon", "'soon' is not a valid duration"),
        ("retry", "failure", "expected a mapping like {on: [failure, oom], max: 3}"),
        ("retry", {"max": 2}, "missing required key 'on'"),
        (
            "retry",
            {"on": "oom", "max": 0, "memory_factor": 20},
            "'max': must be at least 1, got 0; 'memory_factor': must be from 1 to 16, got 20",
        ),
        ("retry", {"on": "failure", "memory_factor": 2}, "memory_factor needs 'oom' in 'on'"),
        ("retries", {}, "unknown key 'retries' (did you mean 'retry'?)"),
    ],
)
def test_validate_job_field_refuses(field: str, value: object, message: str) -> None:
    assert (validate_job_field(field, value) or "").startswith(message)


# ---------------------------------------------------------------------------------------------
# expected_duration and retry


def job_a_with(fields: str) -> str:
    """A one-job file; `fields` are lines of job `a`, indented by 4."""
    return JOB_A + textwrap.indent(textwrap.dedent(fields), "    ")


def only_job(text: str) -> JobSpec:
    (job,) = parse_dag_text(text, source="t.yaml").jobs
    return job


@pytest.mark.parametrize(
    ("value", "expected_s"),
    [("90", 90.0), ("2.5", 2.5), ("1h30m", 5400.0), ("'45s'", 45.0), ("null", None)],
)
def test_expected_duration_takes_seconds_or_a_duration(
    value: str, expected_s: float | None
) -> None:
    assert only_job(JOB_A + f"    expected_duration: {value}\n").expected_duration_s == expected_s


def test_new_fields_default_to_none() -> None:
    job = only_job(JOB_A)
    assert (job.expected_duration_s, job.retry) == (None, None)
    assert JobSpec(name="a", command="x", cores_mcpu=500).retry is None  # keywords, as before


ANY = frozenset({"failure", "preemption", "oom"})

RETRY_CASES = [
    # (id, the retry value as YAML, the policy)
    ("one reason", "{on: failure}", RetryPolicy(frozenset({"failure"}), 3)),
    ("everything", "{on: [failure, preemption, oom], max: 5, memory_factor: 2, "
     "fallback_to_standard: true}", RetryPolicy(ANY, 5, 2.0, 2)),
    ("block style", "\n  on:\n    - oom\n  max: 100\n  memory_factor: 16",
     RetryPolicy(frozenset({"oom"}), 100, 16.0)),
    ("quoted on", "{'on': [oom], memory_factor: 1.5}", RetryPolicy(frozenset({"oom"}), 3, 1.5)),
    ("on read as true", "{true: failure}", RetryPolicy(frozenset({"failure"}), 3)),
    ("fallback count", "{on: preemption, fallback_to_standard: 4}",
     RetryPolicy(frozenset({"preemption"}), 3, 1.0, 4)),
    ("fallback without preemption", "{on: failure, fallback_to_standard: 1}",
     RetryPolicy(frozenset({"failure"}), 3, 1.0, 1)),
    ("fallback false", "{on: failure, fallback_to_standard: false}",
     RetryPolicy(frozenset({"failure"}), 3)),
    ("fallback null", "{on: failure, fallback_to_standard: null}",
     RetryPolicy(frozenset({"failure"}), 3)),
    ("factor 1 without oom", "{on: [preemption], memory_factor: 1}",
     RetryPolicy(frozenset({"preemption"}), 3)),
    ("repeated reason", "{on: [oom, oom], max: 1}", RetryPolicy(frozenset({"oom"}), 1)),
    ("null", "null", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "policy"), [case[1:] for case in RETRY_CASES], ids=[case[0] for case in RETRY_CASES]
)
def test_retry_valid_forms(value: str, policy: RetryPolicy | None) -> None:
    assert only_job(job_a_with(f"retry: {value}")).retry == policy


RETRY_PROBLEM_CASES = [
    # (id, lines of job `a`, fragment of the message, line, field)
    ("not a mapping", "retry: [failure]", "expected a mapping like {on: [failure, oom], max: 3}, "
     "got a list", 5, "retry"),
    ("missing on", "retry: {max: 2}", "missing required key 'on'", 5, "retry"),
    ("empty mapping", "retry: {}", "missing required key 'on'", 5, "retry"),
    ("on empty", "retry:\n  on: []", "'on': expected failure, preemption or oom, or a non-empty "
     "list of them, got a list", 6, "retry"),
    ("on a mapping", "retry:\n  on: {failure: 1}", "'on': expected failure, preemption or oom",
     6, "retry"),
    ("on unknown", "retry:\n  on: preemtion", "'on': 'preemtion' is not a reason to retry (did you "
     "mean 'preemption'?): use failure, preemption or oom", 6, "retry"),
    ("on unknown item", "retry:\n  on:\n    - failure\n    - oops", "'on': 'oops' is not a reason "
     "to retry: use", 8, "retry"),
    ("on item a number", "retry:\n  on:\n    - 3", "'on': expected failure, preemption or oom, "
     "got the number 3", 7, "retry"),
    ("on twice", "retry:\n  on: failure\n  'on': oom", "'on' is given twice", 7, "retry"),
    ("max zero", "retry:\n  on: failure\n  max: 0", "'max': must be at least 1, got 0", 7, "retry"),
    ("max too big", "retry:\n  on: failure\n  max: 101", "'max': must be at most 100, got 101", 7,
     "retry"),
    ("max fraction", "retry:\n  on: failure\n  max: 2.5", "'max': expected a whole number, got "
     "the number 2.5", 7, "retry"),
    ("max boolean", "retry:\n  on: failure\n  max: true", "'max': expected a whole number, got "
     "true", 7, "retry"),
    ("factor below 1", "retry:\n  on: oom\n  memory_factor: 0.5", "'memory_factor': must be from "
     "1 to 16, got 0.5", 7, "retry"),
    ("factor above 16", "retry:\n  on: oom\n  memory_factor: 17", "'memory_factor': must be from "
     "1 to 16, got 17", 7, "retry"),
    ("factor infinite", "retry:\n  on: oom\n  memory_factor: .inf", "must be from 1 to 16, got inf",
     7, "retry"),
    ("factor nan", "retry:\n  on: oom\n  memory_factor: .nan", "must be from 1 to 16, got nan", 7,
     "retry"),
    ("factor text", "retry:\n  on: oom\n  memory_factor: '2'", "'memory_factor': expected a "
     "number, got '2'", 7, "retry"),
    ("factor boolean", "retry:\n  on: oom\n  memory_factor: true", "'memory_factor': expected a "
     "number, got true", 7, "retry"),
    ("factor without oom", "retry:\n  on: [failure, preemption]\n  memory_factor: 2",
     "memory_factor needs 'oom' in 'on'", 7, "retry"),
    ("fallback zero", "retry:\n  on: preemption\n  fallback_to_standard: 0", "'fallback_to_standard"
     "': must be at least 1, got 0", 7, "retry"),
    ("fallback negative", "retry:\n  on: preemption\n  fallback_to_standard: -1", "must be at "
     "least 1, got -1", 7, "retry"),
    ("fallback text", "retry:\n  on: preemption\n  fallback_to_standard: 'yes'", "'fallback_to_"
     "standard': expected true, false or a number of preemptions, got 'yes'", 7, "retry"),
    ("fallback fraction", "retry:\n  on: preemption\n  fallback_to_standard: 1.5", "expected true, "
     "false or a number of preemptions, got the number 1.5", 7, "retry"),
    ("unknown retry key", "retry:\n  on: failure\n  maxx: 2", "unknown key 'maxx' (did you mean "
     "'max'?)", 7, "retry"),
    ("bad expected duration", "expected_duration: soon", "'soon' is not a valid duration", 5,
     "expected_duration"),
    ("zero expected duration", "expected_duration: 0", "0 is not a valid duration", 5,
     "expected_duration"),
    ("negative expected duration", "expected_duration: -5m", "'-5m' is not a valid duration", 5,
     "expected_duration"),
    ("boolean expected duration", "expected_duration: true", "True is not a valid duration", 5,
     "expected_duration"),
    ("mistyped expected duration", "expected_duraton: 5m", "unknown key 'expected_duraton' (did "
     "you mean 'expected_duration'?)", 5, "expected_duraton"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "fragment", "line", "field"),
    [case[1:] for case in RETRY_PROBLEM_CASES],
    ids=[case[0] for case in RETRY_PROBLEM_CASES],
)
def test_new_field_problems_name_file_line_job_and_field(
    tmp_path: Path, fields: str, fragment: str, line: int, field: str
) -> None:
    path = write(tmp_path, job_a_with(fields))
    problem = the_problem(problems_of(path), fragment)
    assert (problem.source, problem.line, problem.job, problem.field) == (
        str(path),
        line,
        "a",
        field,
    )


def test_every_problem_of_a_retry_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        jobs:
          - name: a
            command: echo
            retry:
              on: [failure, oops]
              max: 0
              memory_factor: 99
              fallback_to_standard: 0
              tries: 2
          - name: b
            command: echo
            retry: {max: 2}
        """,
    )
    problems = problems_of(path)
    assert [(p.line, p.job, p.field, p.message.split(":")[0]) for p in problems] == [
        (6, "a", "retry", "'on'"),
        (7, "a", "retry", "'max'"),
        (8, "a", "retry", "'memory_factor'"),
        (9, "a", "retry", "'fallback_to_standard'"),
        (10, "a", "retry", "unknown key 'tries'"),
        (13, "b", "retry", "missing required key 'on' (failure, preemption and/or oom)"),
    ]


def test_retry_problems_in_defaults_name_no_job(tmp_path: Path) -> None:
    text = "version: 1\ndefaults:\n  retry:\n    on: failure\n    memory_factor: 2\n"
    path = write(tmp_path, text + "jobs: [{name: a, command: x}]\n")
    problem = the_problem(problems_of(path), "memory_factor needs 'oom' in 'on'")
    assert (problem.line, problem.job, problem.field) == (5, None, "retry")


def test_retry_problems_in_json_have_lines(tmp_path: Path) -> None:
    job = '{"name": "a", "command": "x",\n "retry": {"on": ["failure"],\n "max": 0}}'
    path = write(tmp_path, '{"version": 1, "jobs": [\n' + job + "]}\n", name="dag.json")
    problem = the_problem(problems_of(path), "'max': must be at least 1")
    assert (problem.line, problem.job, problem.field) == (4, "a", "retry")


def test_new_fields_in_defaults_apply_and_jobs_replace_them() -> None:
    text = """\
        version: 1
        defaults:
          expected_duration: 10m
          retry: {on: [failure, oom], max: 2, memory_factor: 2}
        jobs:
          - {name: inherits, command: x}
          - {name: replaces, command: x, expected_duration: 30, retry: {on: preemption}}
          - {name: clears, command: x, expected_duration: null, retry: null}
        """
    jobs = jobs_by_name(parse_dag_text(textwrap.dedent(text), source="t.yaml"))
    assert (jobs["inherits"].expected_duration_s, jobs["inherits"].retry) == (
        600.0,
        RetryPolicy(frozenset({"failure", "oom"}), 2, 2.0),
    )
    # a job's retry replaces the default's whole: its max is 3 again, not the defaults' 2
    assert (jobs["replaces"].expected_duration_s, jobs["replaces"].retry) == (
        30.0,
        RetryPolicy(frozenset({"preemption"}), 3),
    )
    assert (jobs["clears"].expected_duration_s, jobs["clears"].retry) == (None, None)


@pytest.mark.parametrize(
    "policy",
    [
        RetryPolicy(frozenset({"failure"}), 3),
        RetryPolicy(ANY, 100, 16.0, 1),
        RetryPolicy(frozenset({"oom"}), 1, 1.25),
        RetryPolicy(frozenset({"preemption"}), 7, 1.0, 2),
    ],
)
@pytest.mark.parametrize("expected_duration_s", [None, 0.5, 90.0, 86_400.0])
def test_new_fields_round_trip(
    tmp_path: Path, policy: RetryPolicy, expected_duration_s: float | None
) -> None:
    job = JobSpec(name="a", command="x", memory_bytes=4 * GIB, retry=policy,
                  expected_duration_s=expected_duration_s)  # fmt: skip
    spec = BatchSpec(name="b", jobs=(job,), source=str(tmp_path / "dag.yaml"))
    data = spec_to_dict(spec)
    assert parse_dag(data, source=spec.source) == spec
    path = write(tmp_path, yaml.safe_dump(data, sort_keys=False))
    assert load_dag_file(path) == spec
    json_path = tmp_path / "dag.json"
    json_path.write_text(json.dumps(data))
    assert load_dag_file(json_path) == dataclasses.replace(spec, source=str(json_path))


def test_retry_is_written_in_a_stable_order() -> None:
    policy = RetryPolicy(ANY, 5, 2.0, 3)
    data = spec_to_dict(BatchSpec(name="b", jobs=(JobSpec(name="a", command="x", retry=policy),)))
    assert data["jobs"][0]["retry"] == {
        "on": ["failure", "preemption", "oom"],
        "max": 5,
        "memory_factor": 2,
        "fallback_to_standard": 3,
    }
    assert "expected_duration" not in data["jobs"][0]


# ---------------------------------------------------------------------------------------------
# YAML features: whatever PyYAML's safe loader reads, the file means the same


TRICKY_SCALARS = [
    "yes", "No", "on", "OFF", "~", "null", "", "1_000", "0x1F", "0o17", "017", "1:30", "1.5",
    ".inf", "-.Inf", "1e3", "1.0e+3", "+12", "-0", "2024-01-01", "2024-01-01 10:00:00",
    "'quoted'", '"dq\\tx"', "!!str 12", "!!int '7'", "&anchor 5", "=", "<<", "a: b", "[1]",
    "{x: 1}", "|\n        block\n", ">-\n        folded\n        text\n",
]  # fmt: skip


@pytest.mark.parametrize("scalar", TRICKY_SCALARS)
def test_env_values_read_as_pyyaml_reads_them(scalar: str) -> None:
    text = JOB_A + f"    env:\n      K: {scalar}\n"
    assert_same_as_safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        JOB_A + "  - &b {name: b, command: echo, cpu: 2}\n  - <<: *b\n    name: c\n",
        JOB_A + "    env: &e {A: x}\n  - {name: b, command: x, env: *e}\n",
        "%YAML 1.1\n---\n" + JOB_A,
        "--- !!map\n" + JOB_A,
        JOB_A + "    depends_on: !!seq []\n",
        JOB_A + "    ? [complex, key]\n    : 1\n",
    ],
    ids=["merge key", "alias", "directive", "tagged map", "tagged seq", "complex key"],
)  # duplicate keys, which PyYAML reads as the last one, are refused: tests/test_hostile_files.py
def test_yaml_features_read_as_pyyaml_reads_them(text: str) -> None:
    assert_same_as_safe_load(text)


def assert_same_as_safe_load(text: str) -> None:
    expected = outcome_of(lambda: parse_dag(yaml.safe_load(text), source="t.yaml"))
    assert outcome_of(lambda: parse_dag_text(text, source="t.yaml")) == expected


Outcome = BatchSpec | set[tuple[str, str | None, str | None]]


def outcome_of(parse: Callable[[], BatchSpec]) -> Outcome:
    """The spec, or the problems without their lines; PyYAML's own errors count as one."""
    try:
        return parse()
    except DagFileError as exc:
        return {
            ("invalid YAML" if p.message.startswith("invalid YAML") else p.message, p.job, p.field)
            for p in exc.problems
        }
    except (yaml.YAMLError, ValueError):
        return {("invalid YAML", None, None)}
