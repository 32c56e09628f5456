"""Start-up: `labbatch --help` and argument errors load no engine, database, HTTP or Qt code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.cli import parsers

HEAVY = ("sqlalchemy", "aiohttp", "PySide6", "app.engine", "app.views", "alembic", "asyncio")
# what `labbatch status` and the other read-only commands never load on a SQLite file
READS_NEVER_LOAD = (
    *("sqlalchemy", "aiohttp", "PySide6", "alembic", "aiosqlite", "yaml"),
    *("app.models.db", "app.models.tables", "app.engine.batches.frontend", "app.engine.billing"),
    *("app.engine.driver", "app.engine.scheduler", "app.engine.workers", "app.views"),
)
# what a one-job `labbatch run` on a SQLite file does without (each import is start-up time)
RUN_NEVER_LOADS = (
    # partial indexes state PostgreSQL's WHERE only when the schema is created there
    *("sqlalchemy.dialects.postgresql", "asyncpg", "alembic", "PySide6", "app.views"),
    # the driver speaks WebSocket to its workers itself: aiohttp reads two CA bundles at import
    "aiohttp",
    # SQLite runs on plain sqlite3 threads: no asyncio adapter, and so no ORM either
    *("sqlalchemy.ext.asyncio", "sqlalchemy.orm", "aiosqlite"),
)

# Runs `labbatch ARGS` in a fresh interpreter, then prints which heavy packages it imported.
WRAPPER = """
import json, sys
wanted = json.loads(sys.argv[2])
sys.argv = ["labbatch", *json.loads(sys.argv[1])]
from app.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted({m for m in sys.modules for h in wanted if m == h or m.startswith(h + ".")})
print(json.dumps({"code": code, "heavy": heavy}), file=sys.__stderr__)
"""


def _run_cli(*args: str, heavy: tuple[str, ...] = HEAVY) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, json.dumps(args), json.dumps(heavy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["pool", "create", "--help"],
        ["status"],  # missing batch id: an argument error
        ["run", "dag.yaml", "--workers", "two"],
        ["no-such-command"],
    ],
)
def test_help_and_argument_errors_import_nothing_heavy(args: list[str]) -> None:
    result = _run_cli(*args)
    assert result["code"] in (0, 2)
    assert result["heavy"] == []


def test_a_command_imports_what_it_uses(tmp_path) -> None:
    result = _run_cli("status", "1", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert result["code"] == 1  # no batch 1
    assert "sqlalchemy" in result["heavy"]
    assert not any(m.startswith("PySide6") for m in result["heavy"])  # type: ignore[union-attr]


def test_read_only_commands_load_no_sqlalchemy_on_a_sqlite_file(tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    assert _run_cli("list", "--db", db)["code"] == 0  # creates the database (SQLAlchemy)
    for args in (["status", "1"], ["jobs", "1"], ["log", "1", "a"], ["list"]):
        result = _run_cli(*args, "--db", db, heavy=READS_NEVER_LOAD)
        assert result["code"] == (0 if args == ["list"] else 1)  # no batch 1
        assert result["heavy"] == [], args


def test_run_starts_its_spare_worker_before_it_loads_the_engine(tmp_path) -> None:
    # `--workers 0` is refused after app.cli.run is loaded and before the spare starts: what
    # the command had loaded by then delays its first worker
    dag = tmp_path / "dag.yaml"
    dag.write_text("version: 1\nname: one\njobs:\n  - name: a\n    command: 'true'\n")
    result = _run_cli("run", str(dag), "--workers", "0", heavy=READS_NEVER_LOAD)
    assert result["code"] == 2
    assert result["heavy"] == []


@pytest.mark.parametrize(
    ("name", "text", "never"),
    [
        ("dag.yaml", "version: 1\nname: one\njobs:\n  - name: a\n    command: 'true'\n", ()),
        # a JSON file is read without PyYAML
        ("dag.json", '{"version": 1, "name": "one", "jobs": [{"name": "a", "command": "true"}]}',
         ("yaml",)),
    ],
)  # fmt: skip
def test_a_one_job_run_on_sqlite_loads_only_what_it_uses(
    tmp_path, name: str, text: str, never: tuple[str, ...]
) -> None:
    dag = tmp_path / name
    dag.write_text(text)
    db = f"sqlite:///{tmp_path / 'x.db'}"
    for _ in ("fresh database", "existing database"):
        result = _run_cli("run", str(dag), "--db", db, heavy=(*never, *RUN_NEVER_LOADS))
        assert result["code"] == 0
        assert result["heavy"] == []


def test_the_tables_are_core_tables_without_the_orm() -> None:
    # ORM classes cost every command their mapping at import and an ORM pass per statement
    code = "import sys, app.models.tables; print('sqlalchemy.orm' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


def test_validate_loads_no_database_code(tmp_path) -> None:
    dag = tmp_path / "dag.yaml"
    dag.write_text("version: 1\nname: one\njobs:\n  - name: a\n    command: 'true'\n")
    result = _run_cli("validate", str(dag))
    assert result["code"] == 0
    assert [m for m in result["heavy"] if not m.startswith("asyncio")] == []  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "dag.yaml", "--workers", "2", "--json", "--db", "sqlite:///x.db"],
        ["run", "script.py", "--", "--flag", "value"],
        ["pool", "create", "burst", "--max", "3", "--spot"],
        ["cost", "--by", "day"],
        ["get", "1", "align.bam"],
    ],
)
def test_a_command_line_parses_the_same_with_only_its_commands_parser(argv) -> None:
    # `labbatch CMD ...` builds only CMD's parser (the others cost ~20 ms of start-up)
    every = parsers.build_parser().parse_known_args(argv)
    alone = parsers.build_parser(argv[0]).parse_known_args(argv)
    assert (vars(alone[0]), alone[1]) == (vars(every[0]), every[1])


def test_the_parsers_copies_of_engine_values_agree() -> None:
    from app.engine.billing import rates
    from app.engine.workers import pools
    from app.models import db, importers
    from app.models.importers import hail_script

    assert parsers.POOL_CLOUDS == pools.CLOUDS
    assert parsers.PRICE_CLOUDS == rates.CLOUDS
    assert parsers.DEFAULT_POOL_NAME == db.DEFAULT_POOL_NAME
    assert set(parsers.IMPORT_SUFFIXES) == set(importers.IMPORT_SUFFIXES)
    assert parsers.DEFAULT_SCRIPT_TIMEOUT_S == hail_script.DEFAULT_SCRIPT_TIMEOUT_S
