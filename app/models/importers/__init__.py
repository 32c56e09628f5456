"""Importers: DAGs from hailtop.batch-style scripts, GraphML, DOT and DAG files, validated.

`import_file(path)` picks the importer by the file's suffix and returns an `ImportedDag`, or
raises `DagFileError` listing every problem with its file and line; nothing is half-imported.
Qt-free; a hail script runs in a child process, so callers in an event loop should call this
in a thread.
"""

from __future__ import annotations

import os
from pathlib import PurePath

from app.models.dag_text import load_json
from app.models.dag_yaml import load_yaml
from app.models.importers.dot import import_dot, parse_dot_text
from app.models.importers.graphml import import_graphml
from app.models.importers.hail_script import DEFAULT_SCRIPT_TIMEOUT_S, import_script
from app.models.importers.result import ImportedDag, dag_to_yaml, file_data, read_text
from app.models.spec import DagFileError, Problem, parse_dag_text

__all__ = [
    "IMPORT_SUFFIXES",
    "ImportedDag",
    "dag_to_yaml",
    "file_data",
    "import_dot",
    "import_file",
    "import_graphml",
    "import_script",
    "parse_dot_text",
]

IMPORT_SUFFIXES = {
    ".py": "hail-script",
    ".graphml": "graphml",
    ".dot": "dot",
    ".gv": "dot",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
}


def import_file(
    path: str | os.PathLike[str], *, script_timeout_s: float = DEFAULT_SCRIPT_TIMEOUT_S
) -> ImportedDag:
    """Read a DAG from a file of any supported kind, chosen by its suffix; raise DagFileError."""
    source = os.fspath(path)
    kind = IMPORT_SUFFIXES.get(PurePath(source).suffix.lower())
    if kind == "hail-script":
        return import_script(source, timeout_s=script_timeout_s)
    if kind == "graphml":
        return import_graphml(source)
    if kind == "dot":
        return import_dot(source)
    if kind in ("yaml", "json"):
        text = read_text(source)
        spec = parse_dag_text(text, source=source, fmt=kind, expand_scatter=False)
        data = load_json(text) if kind == "json" else load_yaml(text)
        assert isinstance(data, dict)  # it validated
        return ImportedDag(data, spec, source, kind)
    known = ", ".join(IMPORT_SUFFIXES)
    message = f"cannot import a {PurePath(source).suffix or 'suffix-less'} file: use one of {known}"
    raise DagFileError([Problem(source, message)])
