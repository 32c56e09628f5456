"""Undo commands for files on the canvas: each edit is one step that undo takes back exactly
and redo puts back, file text included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtGui import QUndoCommand, QUndoStack

from app.models.dag_document import DagDocument
from app.views.canvas import file_commands as fc
from tests.views.conftest import EXAMPLES

Edit = Callable[[DagDocument, dict[str, int]], QUndoCommand]


def load() -> tuple[DagDocument, dict[str, int]]:
    document = DagDocument.load(EXAMPLES / "files.yaml")
    return document, {document.name(n): n for n in document.node_ids}


EDITS: dict[str, tuple[Edit, Callable[[DagDocument, dict[str, int]], bool]]] = {
    "connect": (
        lambda d, ids: fc.connect_file(d, None, "reference", ids["report"]),
        lambda d, ids: d.fields(ids["report"])["inputs"][-1] == "reference",
    ),
    "remove input": (
        lambda d, ids: fc.remove_input(d, ids["count"], "kmers"),
        lambda d, ids: d.fields(ids["count"])["inputs"] == {"reads": "samples"},
    ),
    "rename input": (
        lambda d, ids: fc.rename_input(d, ids["index"], "ref", "fasta"),
        lambda d, ids: d.fields(ids["index"])["inputs"] == {"fasta": "reference"},
    ),
    "add output": (
        lambda d, ids: fc.add_output(d, ids["index"], "log"),
        lambda d, ids: d.fields(ids["index"])["outputs"] == {"kmers": ".tsv", "log": None},
    ),
    "remove output": (
        lambda d, ids: fc.remove_output(d, ids["report"], "summary"),
        lambda d, ids: "outputs" not in d.fields(ids["report"]),
    ),
    "rename output": (
        lambda d, ids: fc.rename_output(d, ids["index"], "kmers", "table"),
        lambda d, ids: (
            d.fields(ids["count"])["inputs"]["kmers"] == "index.table"
            and d.fields(ids["report"])["inputs"]
            == {"counts": "count.counts", "kmers": "index.table"}
            and "table" in d.fields(ids["index"])["outputs"]
        ),
    ),
    "rename output written by the batch": (
        lambda d, ids: fc.rename_output(d, ids["report"], "summary", "text"),
        lambda d, ids: (
            d.batch["outputs"][0] == {"from": "report.text", "to": "results/summary.txt"}
        ),
    ),
    "add batch input": (
        lambda d, ids: fc.add_batch_input(d, "/data/reference.fa"),
        lambda d, ids: d.batch["inputs"]["reference_2"] == "/data/reference.fa",
    ),
    "write to": (
        lambda d, ids: fc.write_to(d, ids["index"], "kmers", "results/kmers.tsv"),
        lambda d, ids: d.batch["outputs"][-1] == {"from": "index.kmers", "to": "results/kmers.tsv"},
    ),
    "remove batch output": (
        lambda d, ids: fc.remove_batch_output(d, 0),
        lambda d, ids: d.batch["outputs"] == [{"from": "count.counts", "to": "results/counts"}],
    ),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_file_edit_is_one_step_that_undoes_and_redoes(edit: str, tmp_path: Path) -> None:
    document, ids = load()
    before = document.to_text()
    make, done = EDITS[edit]
    stack = QUndoStack()
    stack.push(make(document, ids))
    assert stack.count() == 1 and done(document, ids)
    assert document.validate() == [] or edit.startswith("remove output")
    after = document.to_text()
    stack.undo()
    assert document.to_text() == before
    stack.redo()
    assert document.to_text() == after and done(document, ids)
    document.save(tmp_path / "edited.yaml")
    reopened = DagDocument.load(tmp_path / "edited.yaml")
    assert reopened.to_text() == after
