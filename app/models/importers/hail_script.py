"""Import a hailtop.batch-style Python script by running it, in a separate process.

The script runs as `python SCRIPT.py` in its own directory, with `LABBATCH_IMPORT_OUTPUT`
naming a file: `app.batch`'s `Batch.run()` then writes the DAG there (an envelope: the DAG file
data and the script lines of each job's calls) instead of running it. A small `hailtop.batch`
package that re-exports `app.batch` is put first on the script's PYTHONPATH, so scripts written
for Hail Batch import unchanged.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.models.dag_text import DataPath
from app.models.importers.result import ImportedDag, finish_import
from app.models.spec import DagFileError, Problem

IMPORT_OUTPUT_ENV = "LABBATCH_IMPORT_OUTPUT"
RUN_OPTIONS_ENV = "LABBATCH_RUN_OPTIONS"  # `labbatch run` options for the script's b.run()
ENVELOPE_FORMAT = 1  # of what `Batch.run()` writes under import; both sides are this checkout
DEFAULT_SCRIPT_TIMEOUT_S = 60.0
REPO_ROOT = Path(__file__).resolve().parents[3]  # the directory holding the `app` package

_FRAME_RE = re.compile(r'^\s*File "(?P<file>[^"\n]+)", line (?P<line>\d+)', re.MULTILINE)
_SHIM_MODULES = {
    "batch": "app.batch.batch",
    "job": "app.batch.jobs",
    "resource": "app.batch.resources",
    "exceptions": "app.batch.resources",
    "utils": "app.batch.functions",
}
_SHIM = '"""LabBatch\'s stand-in for hailtop.batch: see app/batch/."""\nfrom app.batch import *\n'


def python_path(*first: str | os.PathLike[str]) -> str:
    """A PYTHONPATH with `first`, then the LabBatch checkout, then the current one."""
    parts = [os.fspath(entry) for entry in (*first, REPO_ROOT)]
    if current := os.environ.get("PYTHONPATH"):
        parts.append(current)
    return os.pathsep.join(parts)


@contextmanager
def hailtop_shim() -> Iterator[Path]:
    """A directory holding a `hailtop.batch` package that re-exports `app.batch`."""
    with tempfile.TemporaryDirectory(prefix="labbatch-hailtop-") as tmp:
        shim = Path(tmp)
        (shim / "hailtop" / "batch").mkdir(parents=True)
        (shim / "hailtop" / "__init__.py").write_text("")
        (shim / "hailtop" / "batch" / "__init__.py").write_text(_SHIM)
        for module, source in _SHIM_MODULES.items():  # for `from hailtop.batch.job import …`
            (shim / "hailtop" / "batch" / f"{module}.py").write_text(f"from {source} import *\n")
        yield shim


def run_script(
    path: str | os.PathLike[str], script_args: Sequence[str], run_options: Sequence[str]
) -> int:
    """Run a hailtop.batch-style script as `python SCRIPT ARGS` in the current directory, with
    `hailtop.batch` on its path; its b.run() runs the batch with `run_options`. Its exit code."""
    script = Path(path)
    if not script.is_file():
        raise DagFileError([Problem(os.fspath(path), "cannot read the file: no such file")])
    with hailtop_shim() as shim:
        env = {
            **os.environ,
            "PYTHONPATH": python_path(shim),
            RUN_OPTIONS_ENV: json.dumps(list(run_options)),
        }
        env.pop(IMPORT_OUTPUT_ENV, None)
        return subprocess.call([sys.executable, str(script), *script_args], env=env)


def import_script(
    path: str | os.PathLike[str], *, timeout_s: float = DEFAULT_SCRIPT_TIMEOUT_S
) -> ImportedDag:
    """Run a hailtop.batch-style script in a child process; return the DAG its b.run() made."""
    source = os.fspath(path)
    script = Path(source).resolve()
    if not script.is_file():
        raise DagFileError([Problem(source, "cannot read the file: no such file")])
    with tempfile.TemporaryDirectory(prefix="labbatch-import-") as tmp, hailtop_shim() as shim:
        output = Path(tmp, "dag.json")
        output.touch()
        env = {**os.environ, IMPORT_OUTPUT_ENV: str(output), "PYTHONPATH": python_path(shim)}
        try:
            result = subprocess.run(
                [sys.executable, str(script)],
                cwd=script.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            message = f"the script did not finish within {timeout_s:g} s; it was stopped"
            raise DagFileError([Problem(source, message)]) from exc
        if result.returncode != 0:
            raise DagFileError([_failure(source, script, result.returncode, result.stderr)])
        text = output.read_text(encoding="utf-8")
    if not text:
        message = "the script ended without calling run() on a Batch, so it made no DAG"
        raise DagFileError([Problem(source, message)])
    return dag_from_envelope(json.loads(text), source=source)


def _failure(source: str, script: Path, exit_code: int, stderr: str) -> Problem:
    """The script's error, at the line of its last frame in the script's traceback."""
    line = None
    for frame in _FRAME_RE.finditer(stderr):
        if _same_file(frame["file"], script):
            line = int(frame["line"])
    last = next((text.strip() for text in reversed(stderr.splitlines()) if text.strip()), "")
    if line is not None or "Traceback (most recent call last)" in stderr:
        return Problem(source, f"the script failed: {last}", line)
    said = f": {last}" if last else ""
    return Problem(source, f"the script exited with code {exit_code}{said}", line)


def _same_file(shown: str, script: Path) -> bool:
    try:
        return Path(shown).resolve() == script
    except (OSError, RuntimeError):
        return False


def dag_from_envelope(envelope: Any, *, source: str) -> ImportedDag:
    """Validate the DAG that `Batch.run()` wrote; problems are placed at the script's lines."""
    if not isinstance(envelope, dict) or envelope.get("format") != ENVELOPE_FORMAT:
        message = "the script's app.batch is not this LabBatch's; run it with this checkout"
        raise DagFileError([Problem(source, message)])
    lines: dict[DataPath, int] = {}
    for index, fields in envelope.get("lines", {}).items():
        for field, line in fields.items():
            lines[("jobs", int(index), field) if field else ("jobs", int(index))] = line
    return finish_import(
        envelope["dag"],
        source=source,
        kind="hail-script",
        lines=lines,
        notes=envelope.get("notes", ()),
    )
