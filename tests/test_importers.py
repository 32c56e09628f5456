"""Importing DAGs: hailtop.batch-style scripts (run as users run them), GraphML, DOT, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.models.importers import import_file, parse_dot_text
from app.models.spec import DagFileError, parse_dag_text
from app.models.spec_data import spec_to_dict

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


def labbatch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def problems_of(path: Path) -> list[tuple[int | None, str]]:
    with pytest.raises(DagFileError) as caught:
        import_file(path)
    assert all(problem.source == str(path) for problem in caught.value.problems)
    return [(problem.line, str(problem)) for problem in caught.value.problems]


def script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.py"
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# hailtop.batch-style scripts

HAIL_PIPELINE = {
    "version": 1,
    "name": "hail-pipeline",
    "attributes": {"study": "demo"},
    "cancel_after_n_failures": 2,
    "jobs": [
        {
            "name": "index",
            "env": {"GREETING": "hello"},
            "memory": "lowmem",
            "storage": "1Gi",
            # Hail runs a job's commands as `{ ... } && { ... }`: the first to fail ends it
            "command": '{\necho "$GREETING" > "$LABBATCH_BATCH_DIR/index.txt"\n} && '
            "{\necho indexed\n}",
        },
        *(
            {
                "name": f"count-{sample}",
                "depends_on": ["index"],
                "env": {"SAMPLE": sample},
                "timeout": 60,
                "command": 'cat "$LABBATCH_BATCH_DIR/index.txt" > '
                '"$LABBATCH_BATCH_DIR/$SAMPLE.count"',
            }
            for sample in "ab"
        ),
        {
            "name": "job-4",
            "depends_on": ["count-a", "count-b"],
            "cpu": 0.5,
            "memory": "1Gi",
            "command": 'cat "$LABBATCH_BATCH_DIR"/*.count',
        },
        {"name": "job-5", "depends_on": ["job-4"], "always_run": True, "command": "echo report"},
    ],
}


def test_a_hail_script_imports_to_its_dag() -> None:
    imported = import_file(DATA / "hail_pipeline.py")
    assert imported.kind == "hail-script"
    assert imported.data == HAIL_PIPELINE
    assert imported.notes == ()


def test_a_hail_script_run_with_python_runs_its_jobs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(DATA / "hail_pipeline.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    assert "5 jobs: 5 succeeded, 0 failed" in result.stdout


def test_a_failing_batch_run_by_a_script_fails_the_script(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        "import app.batch as hb\n"
        "b = hb.Batch(name='fails')\n"
        "b.new_job(name='bad').command('exit 3')\n"
        "b.run()\n",
    )
    result = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode != 0
    assert "BatchFailedError: batch 'fails' did not succeed" in result.stderr


def test_a_script_written_for_hail_imports_through_hailtop_batch() -> None:
    imported = import_file(DATA / "hailtop_style.py")
    assert imported.data == {
        "version": 1,
        "name": "from-hail",
        "billing_project": "lab-x",
        "jobs": [
            {"name": "first-step", "cpu": 2, "timeout": 600, "command": "echo first"},
            {
                "name": "first-step-2",
                "depends_on": ["first-step"],
                "cpu": 2,
                "timeout": 600,
                "command": "echo second",
            },
        ],
    }
    assert len(imported.notes) == 2
    assert "'first step' is named 'first-step-2'" in imported.notes[1]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("import app.batch as hb\nb = hb.Batch()\nj = b.new_job('a')\nj.cpu(3)\n", 4, "cpu: 3"),
        ("import app.batch as hb\nb = hb.Batch()\nprint(undefined)\nb.run()\n", 3, "NameError"),
        ("import app.batch as hb\nb = hb.Batch(\nb.run()\n", 2, "SyntaxError"),
        (
            "import app.batch as hb\nb = hb.Batch()\nj = b.new_job('a')\n"
            "j.cloudfuse('bucket', '/mnt')\n",
            4,
            "cloudfuse (mounting a bucket",
        ),
        ("import app.batch as hb\nb = hb.Batch()\nb.new_job('a').command('true')\n", None, "run()"),
        ("import sys\nprint('giving up', file=sys.stderr)\nsys.exit(3)\n", None, "code 3"),
    ],
)
def test_a_script_error_is_reported_at_its_line(
    tmp_path: Path, text: str, line: int | None, words: str
) -> None:
    [(found_line, message)] = problems_of(script(tmp_path, text))
    assert found_line == line
    assert words in message


def test_problems_of_a_scripts_dag_are_at_the_lines_of_its_calls(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        "import app.batch as hb\n"
        "b = hb.Batch(name='cycle')\n"
        "a = b.new_job('a').command('echo a')\n"
        "c = b.new_job('c').env('DONE', 'yes')\n"
        "x = b.new_job('x').command('echo x').depends_on(a)\n"
        "a.depends_on(x)\n"
        "b.run()\n",
    )
    problems = problems_of(path)  # job 'c' has no command: a no-op, as in Hail
    assert [line for line, _ in problems] == [6]
    assert "cycle: a -> x -> a" in problems[0][1]


# ---------------------------------------------------------------------------------------------
# GraphML and DOT


def test_a_graphml_file_imports_with_its_attributes() -> None:
    imported = import_file(DATA / "pipeline.graphml")
    assert imported.kind == "graphml"
    assert imported.data == {
        "version": 1,
        "name": "graphml-pipeline",
        "jobs": [
            {"name": "fetch", "cpu": 2, "attributes": {"owner": "alice"}, "command": "echo fetch"},
            {
                "name": "clean",
                "depends_on": ["fetch"],
                "env": {"LEVEL": "3"},
                "memory": "highmem",
                "command": "echo clean",
            },
            {
                "name": "stats",
                "depends_on": ["fetch"],
                "n_max_attempts": 5,
                "command": "echo stats",
            },
            {
                "name": "publish",
                "depends_on": ["clean", "stats"],
                "always_run": True,
                "command": "echo publish",
            },
        ],
    }


def test_a_dot_file_imports_with_chains_groups_defaults_and_comments() -> None:
    imported = import_file(DATA / "pipeline.dot")
    assert imported.kind == "dot"
    assert imported.data == {
        "version": 1,
        "name": "dot-pipeline",
        "jobs": [
            {
                "name": "prepare",
                "cpu": 0.5,
                "memory": "2Gi",
                "attributes": {"label": "Prepare data"},
                "command": "echo prepare",
            },
            {
                "name": "align-1",
                "depends_on": ["prepare"],
                "cpu": 0.5,
                "timeout": 5400,
                "command": "echo align 1",
            },
            {
                "name": "align_2",
                "depends_on": ["prepare"],
                "env": {"SAMPLE": "b"},
                "cpu": 0.5,
                "attributes": {"owner": "lab"},
                "command": "echo align 2",
            },
            {
                "name": "merge",
                "depends_on": ["align-1", "align_2"],
                "cpu": 0.5,
                "always_run": True,
                "command": 'echo merging\ncat "$LABBATCH_BATCH_DIR"/*.txt',
            },
            {
                "name": "report",
                "depends_on": ["merge", "prepare"],
                "n_max_attempts": 2,
                "command": "echo report",
            },
        ],
    }


def parents_of(text: str) -> dict[str, list[str]]:
    data = parse_dot_text(text, source="g.dot").data
    return {job["name"]: job.get("depends_on", []) for job in data["jobs"]}


@pytest.mark.parametrize(
    ("body", "parents"),
    [
        ("a -> b -> c", {"a": [], "b": ["a"], "c": ["b"]}),
        ("a -> {b c}", {"a": [], "b": ["a"], "c": ["a"]}),
        ("{a b} -> c; c -> d", {"a": [], "b": [], "c": ["a", "b"], "d": ["c"]}),
        ("subgraph s1 { a -> b } -> c", {"a": [], "b": ["a"], "c": ["a", "b"]}),
        ('"step one" -> b:out:e', {"step-one": [], "b": ["step-one"]}),
        ("<x> -> 42", {"x": [], "42": ["x"]}),
    ],
)
def test_dot_edges_make_dependencies(body: str, parents: dict[str, list[str]]) -> None:
    text = f"digraph g {{ node [command=true]; {body} }}"
    assert parents_of(text) == parents


def test_a_scatter_job_stays_one_job_as_drawn() -> None:
    text = 'digraph g { a [command="echo $SAMPLE", scatter="{sample: [x, y]}"]; b [command=true] '
    text += "a -> b }"
    imported = parse_dot_text(text, source="g.dot")
    assert imported.data["jobs"][0]["scatter"] == {"sample": ["x", "y"]}
    assert [job.name for job in imported.spec.jobs] == ["a", "b"]  # not a.x, a.y, b
    assert "scatter:\n      sample: [x, y]\n" in imported.to_yaml()


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('digraph g {\n a [command="echo]\n}\n', 2, "quoted string is not closed"),
        ("digraph g {\n /* never closed\n a\n}\n", 2, "comment is not closed"),
        ("graph g {\n a -- b\n}\n", 1, "undirected graph"),
        ("digraph g {\n a\n -- b\n}\n", 3, "'--' is an undirected edge"),
        ('digraph g {\n a [command="x"\n b -> c\n}\n', 3, "']' of line 2 missing"),
        ("digraph g {\n a -> @\n}\n", 2, "unexpected character '@'"),
        ("digraph g { a }\ndigraph h { b }\n", 2, "expected one graph"),
        ("digraph g {\n a -> b\n", 3, "expected '}', got the end of the file"),
    ],
)
def test_bad_dot_is_reported_at_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(DagFileError) as caught:
        parse_dot_text(text, source="g.dot")
    [problem] = caught.value.problems
    assert (problem.source, problem.line) == ("g.dot", line)
    assert words in problem.message


@pytest.mark.parametrize("name", ["bad_fields.dot", "bad_fields.graphml"])
def test_every_problem_of_a_graph_is_listed_with_its_line(name: str) -> None:
    problems = problems_of(DATA / name)
    lines = [11, 13, 15] if name.endswith(".graphml") else [4, 5, 6]
    assert [line for line, _ in problems] == lines
    assert "job 'b': field 'cpu': 3 is not a valid cpu" in problems[0][1]
    assert "job 'c': field 'command': missing" in problems[1][1]
    assert "cycle: a -> b -> a" in problems[2][1]


def test_bad_graphml_is_reported_at_its_line(tmp_path: Path) -> None:
    assert problems_of(DATA / "bad_xml.graphml") == [
        (5, f"{DATA / 'bad_xml.graphml'}:5: invalid XML: mismatched tag: line 5, column 4")
    ]
    undirected = tmp_path / "u.graphml"
    undirected.write_text(
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n'
        '  <graph edgedefault="undirected"><node id="a"/></graph>\n</graphml>\n'
    )
    [(line, message)] = problems_of(undirected)
    assert line == 2
    assert "undirected" in message


def test_an_unknown_kind_of_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dag.txt"
    path.write_text("a -> b")
    [(_, message)] = problems_of(path)
    assert "cannot import a .txt file" in message


def test_a_dag_file_imports_as_it_is_loaded() -> None:
    imported = import_file(REPO / "examples" / "per-sample.yaml")
    assert imported.kind == "yaml"
    assert imported.data["defaults"] == {"cpu": 1, "memory": "standard", "n_max_attempts": 3}


@pytest.mark.parametrize("name", ["hail_pipeline.py", "pipeline.graphml", "pipeline.dot"])
def test_the_yaml_text_reads_back_as_the_same_dag(name: str) -> None:
    imported = import_file(DATA / name)
    again = parse_dag_text(imported.to_yaml(header="a\nb"), source=imported.source)
    assert spec_to_dict(again) == spec_to_dict(imported.spec)


# ---------------------------------------------------------------------------------------------
# `labbatch import`


def test_labbatch_import_writes_a_dag_file_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "dag.yaml"
    result = labbatch("import", str(DATA / "hail_pipeline.py"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "batch 'hail-pipeline', 5 jobs" in result.stdout
    text = out.read_text()
    assert text.startswith(f"# imported from {DATA / 'hail_pipeline.py'} by labbatch import\n")
    assert "jobs:\n  - name: index\n" in text
    assert "    command: |-\n" in text  # a multi-line script stays readable
    validated = labbatch("validate", str(out))
    assert validated.returncode == 0, validated.stderr
    assert "5 jobs" in validated.stdout


def test_labbatch_import_writes_next_to_the_file_or_to_stdout(tmp_path: Path) -> None:
    shutil.copy(DATA / "pipeline.dot", tmp_path / "pipeline.dot")
    result = labbatch("import", "pipeline.dot", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "pipeline.yaml").read_text()
    printed = labbatch("import", "pipeline.dot", "-o", "-", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == written


def test_labbatch_import_lists_problems_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "dag.yaml"
    result = labbatch("import", str(DATA / "bad_fields.dot"), "-o", str(out))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{DATA / 'bad_fields.dot'}:4: job 'b': field 'cpu'" in result.stderr
    assert result.stderr.endswith("3 problems; nothing was written\n")
    assert not out.exists()


def test_a_graph_without_commands_imports_as_a_draft_to_fill_in() -> None:
    imported = parse_dot_text(
        "digraph g { fetch -> qc -> report; fetch -> report }", source="g.dot"
    )
    assert imported.missing_commands == ("fetch", "qc", "report")
    assert [job["name"] for job in imported.data["jobs"]] == ["fetch", "qc", "report"]
    assert all("command" not in job for job in imported.data["jobs"])
    assert imported.data["jobs"][2]["depends_on"] == ["qc", "fetch"]
    assert "3 jobs have no command yet" in imported.notes[-1]
    assert "command" not in imported.to_yaml()
    with pytest.raises(DagFileError, match="missing required key 'command'"):
        parse_dag_text(imported.to_yaml(), source="g.yaml")  # refused where it would run


def test_labbatch_import_writes_a_draft_and_validate_then_refuses_it(tmp_path: Path) -> None:
    dot = tmp_path / "g.dot"
    dot.write_text("digraph g { fetch -> qc [label=x]; qc [command=true] }\n")
    result = labbatch("import", str(dot), "-o", str(tmp_path / "g.yaml"))
    assert result.returncode == 0, result.stderr
    assert "1 job has no command yet ('fetch')" in result.stderr
    check = labbatch("validate", str(tmp_path / "g.yaml"))
    assert check.returncode == 2 and "job 'fetch': field 'command'" in check.stderr
