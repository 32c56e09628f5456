"""Hail's resource-file API (app.batch, `import hailtop.batch`) end to end on the local pool.

Each script in tests/data/hail/ runs as a user runs it, in a copy of that directory, and must
leave exactly the files Hail's LocalBackend writes for it. The expected files are read off
Hail's documentation: `write_output` copies a file to `dest` (a path relative to the current
directory), a resource group to `dest.<member>`; `PythonResult.as_str / as_json / as_repr`
hold `str(result)`, `json.dumps(result)`, `repr(result)` and a newline; a job's commands run
as `{ ... } && { ... }`; children of a failed job do not run, `always_run` jobs do; outputs of
jobs that did not succeed are not written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.batch.python_jobs import RUNNER

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "data" / "hail"
WORDS = "banana\napple\ncherry\n"

EXPECTED: dict[str, dict[str, str]] = {
    "resource_files.py": {
        "upper.txt": "APPLE\nBANANA\nCHERRY\n",
        "counts/n.txt": "3\n",
        "final result.txt": "APPLE\n",
        "copy of words.txt": WORDS,
    },
    "groups.py": {
        "filtered.bed": "f:B1\n",
        "filtered.bim": "f:M1\nf:M2\n",
        "filtered.fam": "f:S1\nf:S2\nf:S3\n",
        "stats.txt": "3\nf:M1\nf:M2\n",
        "raw.bed": "B1\n",
        "raw.bim": "M1\nM2\n",
        "raw.fam": "S1\nS2\nS3\n",
    },
    "scatter_gather.py": {
        "all.txt": "".join(f"{n}\n" for n in range(1, 16)),
        "total.txt": "120\n",
    },
    "python_jobs.py": {
        "seven.txt": "7\n",
        "seven.repr": "7\n",
        "ten.json": "10\n",
        "summary.json": '{"n": 4, "total": 100}\n',
        "report.repr": "'numbers: 4 values, total 100'\n",
        "shout.txt": "NUMBERS: 4 VALUES, TOTAL 100\n",
    },
    # bad failed, child was cancelled, slow timed out, boom raised: only these two are written
    "failures.py": {"ok.txt": "fine\n", "cleanup.txt": "fine\n"},
}
FAILING = {"failures.py"}


def workdir(tmp_path: Path) -> Path:
    """A copy of the scripts and their data, as a user's project directory."""
    work = tmp_path / "project"
    shutil.copytree(SCRIPTS, work)
    return work


def run(*argv: str, cwd: Path, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def labbatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "app", *args, cwd=cwd)


def written(out: Path) -> dict[str, str]:
    """Every file under `out`, by its path relative to `out`."""
    files = sorted(path for path in out.rglob("*") if path.is_file())
    return {path.relative_to(out).as_posix(): path.read_text() for path in files}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_labbatch_run_script_writes_what_hails_local_backend_writes(
    tmp_path: Path, script: str
) -> None:
    work = workdir(tmp_path)
    result = labbatch("run", script, cwd=work)
    if script in FAILING:
        assert result.returncode == 1, result.stderr
        assert f"labbatch: {script}:" in result.stderr
        assert "BatchFailedError: batch 'failures' did not succeed" in result.stderr
        assert "Traceback" not in result.stderr
    else:
        assert result.returncode == 0, result.stdout + result.stderr
    assert written(work / "out") == EXPECTED[script]


def test_failures_end_each_job_as_hail_says(tmp_path: Path) -> None:
    result = labbatch("run", "failures.py", cwd=workdir(tmp_path))
    states = {line.split()[1]: line.split()[2] for line in result.stdout.splitlines()[1:]}
    assert states == {
        "ok": "Success",
        "bad": "Failed",  # its third command never ran: `exit 3` ended the job
        "child": "Cancelled",
        "cleanup": "Success",  # always_run
        "slow": "Error",  # timed out after 1 s, which Hail's LocalBackend cannot do
        "boom": "Failed",  # ZeroDivisionError in the Python job
    }
    assert "timed out after 1s" in result.stdout


@pytest.mark.parametrize("script", ["python_jobs.py", "groups.py"])
def test_import_then_run_writes_the_same_files(tmp_path: Path, script: str) -> None:
    work = workdir(tmp_path)
    dag = tmp_path / "elsewhere" / "dag.yaml"
    dag.parent.mkdir()
    imported = labbatch("import", script, "-o", str(dag), cwd=work)
    assert imported.returncode == 0, imported.stderr
    assert not (work / "out").exists()  # importing runs nothing
    ran = labbatch("run", str(dag), cwd=dag.parent)  # paths were made absolute at import
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert written(work / "out") == EXPECTED[script]


def test_plain_python_with_app_batch_runs_the_batch(tmp_path: Path) -> None:
    work = workdir(tmp_path)
    result = run(sys.executable, "plain_python.py", cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert written(work / "out") == {"first.txt": "banana\n"}


def test_the_dag_of_a_script_names_its_files(tmp_path: Path) -> None:
    work = workdir(tmp_path)
    result = labbatch("import", "resource_files.py", "-o", "-", cwd=work)
    assert result.returncode == 0, result.stderr
    dag = result.stdout
    assert f"my_words: {work}/data/my words.txt" in dag  # a batch input, absolute
    assert "inputs: {sort_ofile: sort.ofile}" in dag  # another job's file: the dependency
    assert "outputs: {ofile: .txt}" in dag  # add_extension
    assert "tr a-z A-Z < {{sort_ofile}} > {{ofile}}" in dag
    assert "${LABBATCH_SCRATCH}/hail_tmp/tmp" in dag  # a file no other job reads stays
    assert f"to: {work}/out/final result.txt" in dag


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            "j = b.new_job('a')\nj.declare_resource_group(g={'bed': '{root}.bed'})\n"
            "j.command(f'touch {j.g.bed}')\nb.write_output(j.g.bed, 'x.bed')\n",
            "write_output of one member of a resource group",
        ),
        ("b.read_input_group(**{'fa': 'a.fa', 'fa.idx': 'a.fa.idx'})\n", "'fa.idx'"),
        ("b.new_job('a').cloudfuse('bucket', '/mnt')\n", "cloudfuse"),
        ("j = b.new_job('a')\nj.command(f'touch {j.o}')\nj.o.add_extension('txt')\n", "'txt'"),
        ("hb.Batch.from_batch_id(3)\n", "Batch.from_batch_id"),
        ("b.new_python_job('p').call(len, 'x' * 200_000)\n", "more than the 96 KiB"),
        ("hb.BatchPoolExecutor()\n", "BatchPoolExecutor"),
    ],
)
def test_what_labbatch_lacks_is_named(tmp_path: Path, body: str, words: str) -> None:
    script = tmp_path / "lacking.py"
    script.write_text(f"import hailtop.batch as hb\nb = hb.Batch()\n{body}b.run()\n")
    result = labbatch("run", str(script), cwd=tmp_path)
    assert result.returncode == 2
    [message] = [line for line in result.stderr.splitlines() if line.startswith("labbatch:")]
    assert "NotSupportedError" in message and words in message
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (  # Hail: another job's file must be made in that job's command first
            "j1 = b.new_job('a')\nj2 = b.new_job('b')\nj2.command(f'cat {j1.ofile}')\n",
            "undefined resource 'ofile' of job 'a'",
        ),
        (
            "j = b.new_python_job('p')\nr = j.call(len, 'abc')\n"
            "b.new_job('b').command(f'cat {r}')\n",
            "Use one of the methods `as_str`, `as_json` or `as_repr`",
        ),
        ("j = b.new_job('a')\nb.write_output(j.ofile, 'x')\n", "undefined resource 'ofile'"),
        ("j = b.new_job('a')\nj.command(f'echo {j}')\n", "reference to a Job object"),
        ("j = b.new_python_job('p')\nj.call(lambda x: x, 1, 2)\n", "Cannot call <lambda>"),
    ],
)
def test_misuse_is_refused_at_its_line(tmp_path: Path, body: str, words: str) -> None:
    script = tmp_path / "misuse.py"
    script.write_text(f"import hailtop.batch as hb\nb = hb.Batch()\n{body}b.run()\n")
    result = labbatch("run", str(script), cwd=tmp_path)
    assert result.returncode == 2
    last_line = len(body.splitlines()) + 2
    assert f"labbatch: misuse.py:{last_line}: BatchException: " in result.stderr
    assert words in result.stderr


def test_a_python_job_on_another_python_version_says_so(tmp_path: Path) -> None:
    result = run(sys.executable, "-c", RUNNER, "2.7", "payload", cwd=tmp_path)
    assert result.returncode == 1
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert (
        f"this Python job was pickled by Python 2.7, but the worker runs it with Python {here}"
        in (result.stderr)
    )


def test_hailtop_submodules_and_a_job_without_commands(tmp_path: Path) -> None:
    script = tmp_path / "gather.py"
    script.write_text(
        "import hailtop.batch as hb\n"
        "from hailtop.batch.job import BashJob\n"
        "from hailtop.batch.resource import ResourceGroup\n"
        "b = hb.Batch(name='gather')\n"
        "parts = [b.new_job(f'part-{i}').command(f'echo {i}') for i in range(2)]\n"
        "assert isinstance(parts[0], BashJob)\n"
        "b.new_job('gather').depends_on(*parts)  # no command: a no-op, as in Hail\n"
        "b.run()\n"
    )
    result = labbatch("run", str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 jobs: 3 succeeded" in result.stdout


def test_a_bad_value_is_refused_at_its_line_without_a_traceback(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text(
        "import hailtop.batch as hb\nb = hb.Batch()\nb.new_job('a').cpu(3)\nb.run()\n"
    )
    result = labbatch("run", str(script), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("labbatch: bad.py:3: InvalidValueError: job 'a': cpu: 3 ")
    assert "Traceback" not in result.stderr


def test_a_script_gets_its_arguments_after_the_options(tmp_path: Path) -> None:
    script = tmp_path / "args.py"
    script.write_text(
        "import sys\nimport hailtop.batch as hb\n"
        "b = hb.Batch(name=sys.argv[2])\n"
        "j = b.new_job('echo')\nj.command(f'echo {sys.argv[1]} > {j.ofile}')\n"
        "b.write_output(j.ofile, 'out/said.txt')\nb.run()\n"
    )
    result = labbatch("run", str(script), "--json", "--", "--hello", "named", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"name": "named"' in result.stdout
    assert (tmp_path / "out" / "said.txt").read_text() == "--hello\n"


def test_the_example_hail_script_runs(tmp_path: Path) -> None:
    result = labbatch("run", str(REPO / "examples" / "hail_files.py"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert written(tmp_path / "results") == {
        "counts.json": '{"a": 1, "b": 0}\n',
        "kmers.tsv": "ACG\t1\nCCA\t1\nGGA\t1\nGTT\t1\nTAC\t1\nTGA\t1\n",
        "summary.txt": '3-mers in the reference: 6\nmatching reads: {"a": 1, "b": 0}\n',
    }


def test_a_cycle_made_through_files_is_refused_at_its_job(tmp_path: Path) -> None:
    script = tmp_path / "cycle.py"
    script.write_text(
        "import hailtop.batch as hb\nb = hb.Batch(name='cycle')\n"
        "one = b.new_job('one')\ntwo = b.new_job('two')\n"
        "one.command(f'echo > {one.ofile}')\n"
        "two.command(f'cat {one.ofile} > {two.ofile}')\n"
        "one.command(f'cat {two.ofile}')  # one reads what two makes of what one made\n"
        "b.run()\n"
    )
    result = labbatch("run", str(script), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{script}:3: job 'one': field 'depends_on': cycle: one -> two -> one" in result.stderr
    assert "Traceback" not in result.stderr


def test_plink_merge_builds_hails_tree_of_merge_jobs(tmp_path: Path) -> None:
    work = workdir(tmp_path)
    (work / "merge.py").write_text(
        "import hailtop.batch as hb\nb = hb.Batch(name='merge')\n"
        "sets = [b.read_input_group(bed='data/geno.bed', bim='data/geno.bim', fam='data/geno.fam')"
        " for _ in range(3)]\n"
        "b.write_output(hb.plink_merge(b, sets, branching_factor=2), 'out/merged')\nb.run()\n"
    )
    result = labbatch("import", "merge.py", "-o", "-", cwd=work)
    assert result.returncode == 0, result.stderr
    dag = result.stdout
    assert "name: plink-merge-0-0" in dag and "name: plink-merge-1-0" in dag
    assert "plink --bfile {{geno}} --merge-list merge_list --out {{ofile}}" in dag
    assert 'echo "{{geno_2.bed}} {{geno_2.bim}} {{geno_2.fam}}" >> merge_list' in dag
    assert f"from: plink-merge-1-0.ofile, to: {work}/out/merged" in dag
