"""Hostile DAG files: exit 2 with a message, in bounded time and memory, and nothing stored.

The seeds are the cases a hostile tester tried (issue 15); the fuzz mutates valid files into
hostile ones (and at random) and feeds them to the validation that `validate`, `submit` and the
canvas share, in-process for speed; a handful go through the real `labbatch` process.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.models.limits import MAX_NESTING
from app.models.spec import BatchSpec, DagFileError, load_dag_file

MIB = 1024 * 1024
MAX_CPU_S = 1.0  # per file, in-process (CPU time: the machine may be busy)
MAX_PEAK_BYTES = 200 * MIB  # Python allocations while one file is validated
CLI_MEMORY_BYTES = 1536 * MIB  # address space of a `labbatch` process

JOB = "  - {name: a, command: 'echo hi'}\n"


def _yaml(body: str) -> str:
    return "version: 1\nname: hostile\njobs:\n" + body


def _scatter_file(path: str) -> str:
    return _yaml(f"  - {{name: a, command: 'echo $S', scatter: {{s: {{file: '{path}'}}}}}}\n")


def _fifo(tmp: Path) -> str:
    os.mkfifo(tmp / "fifo")
    return _scatter_file(str(tmp / "fifo"))


def _gigabyte(tmp: Path) -> str:
    with open(tmp / "big.txt", "wb") as file:
        file.truncate(1024 * MIB)  # sparse: costs no disk
    return _scatter_file(str(tmp / "big.txt"))


CROSS = _yaml(
    "  - {name: a, command: 'true', scatter: {i: {range: [1, 100000]}}}\n"
    "  - {name: b, command: 'true', depends_on: [a], scatter: {j: {range: [1, 100000]}}}\n"
)
DEEP = "[" * 100_000 + "]" * 100_000


def _job(fields: str) -> str:
    """A file of one job `a` with these extra fields (flow YAML)."""
    return _yaml(f"  - {{name: a, command: x, {fields}}}\n")


def _json_job(**fields: object) -> str:
    return json.dumps({"version": 1, "jobs": [{"name": "a", "command": "x", **fields}]})


DIGITS = "9" * 5000
DUP_YAML = _yaml("  - name: a\n    command: echo\n    command: rm -rf data\n")
DUP_JSON = '{"version": 1,\n "jobs": [{"name": "a",\n  "command": "echo",\n  "command": "rm"}]}'
DUP_TOP = "version: 1\njobs: [{name: a, command: x}]\njobs: [{name: b, command: y}]\n"
ENV_X_SCATTER = _job("scatter: {i: {range: [1, 100000]}}, env: {BIG: " + "v" * 60_000 + "}")
LAUGHS = (
    "version: 1\nx0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"x{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]\n" for k in range(1, 9))
    + "jobs: [{name: a, command: x, attributes: *a8}]\n"
)
DEEP_BLOCK = _yaml("  - name: a\n    command: x\n    env:\n") + "".join(
    "  " * (k + 3) + f"k{k}:\n" for k in range(200)
)

# (id, file name, text or a function of the test's dir that writes aux files, what the message says)
Seed = tuple[str, str, str | Callable[[Path], str], str]
SEEDS: list[Seed] = [
    ("values /dev/zero", "z.yaml", _scatter_file("/dev/zero"), "a character device"),
    ("values fifo", "f.yaml", _fifo, "a named pipe"),
    ("values 1 GB", "g.yaml", _gigabyte, "larger than 32.0 MiB"),
    ("cross product", "x.yaml", CROSS, "10,000,000,000 dependencies; at most 1,000,000 jobs"),
    ("deep json", "d.json", '{"version": 1, "jobs": ' + DEEP + "}", "nested more than"),
    ("deep yaml flow", "d.yaml", "version: 1\njobs: " + DEEP + "\n", "nest"),
    ("deep yaml block", "db.yaml", DEEP_BLOCK, f"nested more than {MAX_NESTING} levels deep"),
    ("5000 digits yaml", "n.yaml", _job(f"cpu: {DIGITS}"), "5,000 characters"),
    (
        "5000 digits json",
        "n.json",
        _json_job(cpu=0).replace('"cpu": 0', f'"cpu": {DIGITS}'),
        "5,000",
    ),
    ("4000-digit attempts", "m.yaml", _job(f"n_max_attempts: {DIGITS[:4000]}"), "too long"),
    ("attempts over int32", "m2.yaml", _job("n_max_attempts: 4294967296"), "2,147,483,647"),
    ("storage 1e300", "s.yaml", _job("storage: 1.0e+300"), "not a valid size"),
    ("range past 2^53", "r.yaml", _job("scatter: {i: {range: [1, 9007199254740993]}}"), "large"),
    ("dup key yaml", "k.yaml", DUP_YAML, "duplicate key 'command' (lines 5 and 6)"),
    ("dup key json", "k.json", DUP_JSON, "duplicate key 'command' (lines 3 and 4)"),
    ("dup top key", "t.yaml", DUP_TOP, "duplicate key 'jobs' (lines 2 and 3)"),
    ("dup key on/true", "o.yaml", _job("attributes: {on: a, true: b}"), "duplicate key"),
    ("10 MB batch name", "l.json", json.dumps({"version": 1, "name": "n" * 10**7}), "10,000,000"),
    ("10 MB attribute", "la.json", _json_job(attributes={"k": "v" * 10**7}), "10,000,000"),
    ("10 MB yaml string", "lz.yaml", _job("attributes: {k: " + "v" * 10**7 + "}"), "10,000,000"),
    ("long attribute", "lb.yaml", _job(f"attributes: {{k: {'v' * 5000}}}"), "at most 4,096"),
    ("long batch name", "lc.yaml", "version: 1\nname: " + "n" * 201 + "\njobs: []\n", "200"),
    ("long pool", "ld.yaml", _job(f"pool: {'p' * 101}"), "at most 100"),
    ("long scatter value", "le.yaml", _job(f"scatter: {{s: ['{'v' * 5000}']}}"), "4,096"),
    ("env x scatter", "lf.yaml", ENV_X_SCATTER, "add up to"),
    ("billion laughs", "bl.yaml", LAUGHS, "aliases expand to more than"),
    ("file is /dev/zero", "/dev/zero", "", "a character device"),
]


def _materialize(tmp_path: Path, name: str, content: str | Callable[[Path], str]) -> Path:
    if name.startswith("/"):
        return Path(name)
    text = content(tmp_path) if callable(content) else content
    path = tmp_path / name
    path.write_text(text)
    return path


def validate_bounded(path: Path) -> BatchSpec | DagFileError:
    """Validate as `labbatch validate` does, within the CPU time and memory bounds."""
    start = time.process_time()
    outcome = _validate(path)
    cpu_s = time.process_time() - start
    assert cpu_s < MAX_CPU_S, f"{path.name}: {cpu_s:.2f} s of CPU"
    tracemalloc.start()
    try:
        _validate(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"{path.name}: {peak / MIB:.0f} MiB at peak"
    return outcome


def _validate(path: Path) -> BatchSpec | DagFileError:
    try:
        return load_dag_file(path)
    except DagFileError as exc:  # anything else is a bug: it propagates
        return exc


def assert_refused(outcome: BatchSpec | DagFileError, fragment: str = "") -> DagFileError:
    assert isinstance(outcome, DagFileError), f"accepted: {outcome!r:.200}"
    assert outcome.exit_code == 2
    assert outcome.problems and all(p.message for p in outcome.problems)
    text = str(outcome)
    assert fragment in text, text[:500]
    assert all(len(str(p)) < 1000 for p in outcome.problems)  # messages, not the file back
    return outcome


@pytest.mark.parametrize(
    ("name", "content", "fragment"), [s[1:] for s in SEEDS], ids=[s[0] for s in SEEDS]
)
def test_hostile_seed_is_refused_quickly_with_a_message(
    tmp_path: Path, name: str, content: str | Callable[[Path], str], fragment: str
) -> None:
    path = _materialize(tmp_path, name, content)
    assert_refused(validate_bounded(path), fragment)


# ---------------------------------------------------------------------------------------------
# The fuzz: valid files mutated into hostile ones, and at random

BASES: list[dict[str, Any]] = [
    yaml.safe_load((Path(__file__).parent.parent / "examples" / name).read_text())
    for name in ("diamond.yaml", "per-sample.yaml", "failure.yaml")
] + [
    {
        "version": 1,
        "name": "scatter",
        "defaults": {"env": {"REF": "hg38"}, "retry": {"on": ["failure"], "max": 2}},
        "jobs": [
            {"name": "split", "command": "true", "scatter": {"i": {"range": [1, 50]}}},
            {"name": "merge", "command": "true", "depends_on": ["split"]},
        ],
    }
]


def _random_path(rng: random.Random, data: Any) -> list[Any]:
    """A path to a random value inside the data (mappings and lists), not the root."""
    path: list[Any] = []
    node = data
    while isinstance(node, dict | list) and node and (not path or rng.random() < 0.6):
        step = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(step)
        node = node[step]
    return path or ["jobs"]


def _put(data: Any, path: list[Any], value: Any) -> None:
    node = data
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


def _nested(depth: int) -> Any:
    value: Any = "x"
    for k in range(depth):
        value = [value] if k % 2 else {"k": value}
    return value


def _any_job(rng: random.Random, data: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = rng.choice(data["jobs"])
    return job


# Each makes the data hostile in one way that must be refused; (data, rng) -> text-level hook
DataMutator = Callable[[dict[str, Any], random.Random], None]
DATA_MUTATORS: list[DataMutator] = [
    lambda d, r: _put(d, _random_path(r, d), _nested(MAX_NESTING + r.randrange(1, 100))),
    lambda d, r: _put(d, _random_path(r, d), r.choice([1, -1]) * 10 ** r.randrange(41, 300)),
    lambda d, r: _put(d, _random_path(r, d), 2**53 + r.randrange(1, 10**6)),
    lambda d, r: _put(d, _random_path(r, d), "s" * r.randrange(MIB + 1, MIB + 1000)),
    lambda d, r: _any_job(r, d).update(name="n" * r.randrange(101, 5000)),
    lambda d, r: _any_job(r, d).update(attributes={"k": "v" * r.randrange(4097, 50_000)}),
    lambda d, r: _any_job(r, d).update(env={"K" * r.randrange(101, 400): "v"}),
    lambda d, r: _any_job(r, d).update(n_max_attempts=r.randrange(2**31, 2**50)),
    lambda d, r: _any_job(r, d).update(storage=r.choice(["1e300", 1.0e300, "99999999Ti"])),
    lambda d, r: d.update(name="b" * r.randrange(201, 10_000)),
    lambda d, r: d["jobs"].extend(_cross(3000 + r.randrange(9000), 3000)),
]


def _cross(n_parents: int, n_children: int) -> list[dict[str, Any]]:
    """Two scatters, the second depending on the first: n_parents x n_children dependencies."""
    return [
        {"name": "wide1", "command": "x", "scatter": {"i": {"range": [1, n_parents]}}},
        {
            "name": "wide2",
            "command": "x",
            "depends_on": ["wide1"],
            "scatter": {"j": {"range": [1, n_children]}},
        },
    ]


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _dumps(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=1)
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False, width=10**9)


def _duplicate_a_key(text: str, rng: random.Random) -> str:
    """Give one `key: value` line twice (block YAML, or JSON with one key per line)."""
    lines = text.splitlines(keepends=True)
    i = rng.choice([i for i, line in enumerate(lines) if _one_scalar_entry(line)])
    line = lines[i]
    if line.lstrip().startswith("{") or line.lstrip().startswith('"'):  # JSON: the copy first
        copy = line.rstrip().rstrip(",") + ",\n"
        return "".join([*lines[:i], copy, *lines[i:]])
    copy = line.replace("- ", "  ", 1) if line.lstrip().startswith("- ") else line
    return "".join([*lines[: i + 1], copy, *lines[i + 1 :]])


def _one_scalar_entry(line: str) -> bool:
    """A whole `key: scalar` entry on one line."""
    text = line.strip().removeprefix("- ").rstrip(",")
    try:
        entry = json.loads("{" + text + "}") if text.startswith('"') else yaml.load(text, _LOADER)
    except (ValueError, yaml.YAMLError):
        return False
    return (
        isinstance(entry, dict)
        and len(entry) == 1
        and not isinstance(next(iter(entry.values())), dict | list)
    )


def _hostile_cases(n: int) -> list[tuple[str, str, str]]:
    """(file name, text, kind) of `n` hostile mutations of the bases, deterministic."""
    rng = random.Random(15)
    cases = []
    for k in range(n):
        data = json.loads(json.dumps(rng.choice(BASES)))
        fmt = rng.choice(["yaml", "json"])
        if k % 4 == 3:
            text, kind = _duplicate_a_key(_dumps(data, fmt), rng), "duplicate key"
        else:
            mutate = rng.randrange(len(DATA_MUTATORS))
            DATA_MUTATORS[mutate](data, rng)
            text, kind = _dumps(data, fmt), f"mutator {mutate}"
        cases.append((f"h{k}.{fmt}", text, kind))
    return cases


def test_fuzz_hostile_mutations_are_all_refused(tmp_path: Path) -> None:
    for name, text, kind in _hostile_cases(200):
        path = tmp_path / name
        path.write_text(text)
        outcome = validate_bounded(path)
        assert isinstance(outcome, DagFileError), f"{name} ({kind}) was accepted"
        assert_refused(outcome, "duplicate key" if kind == "duplicate key" else "")


_NOISE = [*"[]{}:,-\"'&*!|>#9.\n \t", "9" * 42, "\n  - "]


def _random_edit(text: str, rng: random.Random) -> str:
    for _ in range(rng.randrange(1, 4)):
        i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
        edit = rng.randrange(3)
        if edit == 0:
            text = text[:i] + text[j:]
        elif edit == 1:
            text = text[:j] + text[i:j] * rng.randrange(1, 50) + text[j:]
        else:
            text = text[:i] + "".join(rng.choices(_NOISE, k=rng.randrange(1, 20))) + text[i:]
    return text


def test_fuzz_random_edits_are_valid_or_refused_never_a_crash(tmp_path: Path) -> None:
    rng = random.Random(1515)
    n_refused = 0
    for k in range(200):
        fmt = rng.choice(["yaml", "json"])
        path = tmp_path / f"e{k}.{fmt}"
        path.write_text(_random_edit(_dumps(json.loads(json.dumps(rng.choice(BASES))), fmt), rng))
        outcome = validate_bounded(path)
        if isinstance(outcome, DagFileError):
            assert_refused(outcome)
            n_refused += 1
        else:
            assert 0 < len(outcome.jobs) <= 1_000_000
    assert n_refused > 50  # the edits did break files


def test_duplicate_key_message_names_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(_yaml("  - name: a\n    command: echo hi\n    cpu: 1\n    command: rm x\n"))
    (problem,) = assert_refused(validate_bounded(path)).problems
    assert problem.line == 7
    assert "duplicate key 'command' (lines 5 and 7)" in problem.message


def test_limits_leave_ordinary_files_alone(tmp_path: Path) -> None:
    for k, data in enumerate(BASES):
        for fmt in ("yaml", "json"):
            path = tmp_path / f"ok{k}.{fmt}"
            path.write_text(_dumps(data, fmt))
            assert isinstance(validate_bounded(path), BatchSpec)
    anchors = tmp_path / "anchors.yaml"
    anchors.write_text(
        "version: 1\ndefaults: {env: &e {A: '1'}}\njobs:\n"
        "  - {name: a, command: x, env: *e}\n  - {<<: {command: y}, name: b}\n"
    )
    assert isinstance(validate_bounded(anchors), BatchSpec)


# ---------------------------------------------------------------------------------------------
# Through the real `labbatch` process: exit 2, a message, no traceback, nothing stored

CLI_SEEDS = [
    "values /dev/zero",
    "cross product",
    "deep json",
    "4000-digit attempts",
    "dup key yaml",
    "10 MB attribute",
]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CLI_MEMORY_BYTES, CLI_MEMORY_BYTES))


def test_cli_validate_and_submit_refuse_hostile_files(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    seeds = {s[0]: s for s in SEEDS}
    for seed_id in CLI_SEEDS:
        _, name, content, fragment = seeds[seed_id]
        path = _materialize(tmp_path, name, content)
        commands = ["submit", "validate"] if seed_id == "cross product" else ["submit"]
        for command in commands:
            result = subprocess.run(
                [sys.executable, "-m", "app", command, str(path), "--db", f"sqlite:///{db}"],
                capture_output=True,
                text=True,
                timeout=60,
                preexec_fn=_limit_memory,
            )
            assert result.returncode == 2, (seed_id, command, result.stderr[-2000:])
            assert fragment in result.stderr, result.stderr[-2000:]
            assert "nothing was submitted" in result.stderr
            assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("select count(*) from batches").fetchone() == (0,)
            assert conn.execute("select count(*) from jobs").fetchone() == (0,)
