"""Files in the canvas's DAG document: the file model round trips unchanged, file references
make dependencies (for layout and cycle checks), and the new values the edits set."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.engine.batches.file_preview import first_lines
from app.models import dag_files
from app.models.dag_document import DagDocument

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def files_example() -> tuple[DagDocument, dict[str, int]]:
    document = DagDocument.load(EXAMPLES / "files.yaml")
    return document, {document.name(n): n for n in document.node_ids}


def test_the_file_model_loads_and_saves_unchanged(tmp_path: Path) -> None:
    document, _ = files_example()
    original = yaml.safe_load((EXAMPLES / "files.yaml").read_text())
    assert document.to_data(layout=False) == original
    assert document.validate() == []
    saved = tmp_path / "files.yaml"
    document.save(saved)
    text = saved.read_text()
    assert yaml.safe_load(text) == {**original, "layout": yaml.safe_load(text)["layout"]}
    assert list(yaml.safe_load(text)) == ["version", "name", "inputs", "jobs", "outputs", "layout"]
    assert DagDocument.load(saved).to_text() == text  # save, open, save: the same text


def test_references_make_dependencies_that_lay_jobs_out_left_to_right() -> None:
    document, ids = files_example()
    assert document.edges == []  # no depends_on is written: the files make the order
    assert dag_files.file_edges(document) == [
        (ids["index"], ids["count"]),
        (ids["count"], ids["report"]),
        (ids["index"], ids["report"]),
    ]
    xs = [document.position(ids[name])[0] for name in ("index", "count", "report")]
    assert xs == sorted(xs) and len(set(xs)) == 3
    links = dag_files.file_links(document)
    assert dag_files.FileLink(None, "samples", ids["count"], "reads") in links
    assert dag_files.FileLink(ids["count"], "counts", ids["report"], "counts") in links


def test_connecting_refuses_cycles_self_reads_and_duplicates() -> None:
    document, ids = files_example()
    check = dag_files.check_connect
    assert "cycle" in (check(document, ids["report"], "summary", ids["index"]) or "")
    assert "own output" in (check(document, ids["index"], "kmers", ids["index"]) or "")
    assert "already reads" in (check(document, ids["index"], "kmers", ids["count"]) or "")
    assert check(document, None, "reference", ids["report"]) is None


def test_new_inputs_get_free_names_and_lists_stay_lists_when_they_can() -> None:
    document, ids = files_example()
    report = document.fields(ids["report"])
    assert dag_files.with_input(report, "reference") == [
        "count.counts",
        "index.kmers",
        "reference",
    ]
    count = document.fields(ids["count"])
    assert dag_files.with_input(count, "index.kmers") == {
        "reads": "samples",
        "kmers": "index.kmers",
        "kmers_2": "index.kmers",
    }
    assert dag_files.without_input(report, "kmers") == ["count.counts"]
    assert dag_files.name_for_location("/data/Sample A.fa.gz") == "Sample_A"
    assert dag_files.name_for_location("/data/1.txt") == "f_1"


def test_file_names_are_checked_like_the_cli_checks_them() -> None:
    document, ids = files_example()
    count = document.fields(ids["count"])
    assert dag_files.check_file_name(count, "bam") is None
    assert "already has" in (dag_files.check_file_name(count, "reads") or "")
    assert dag_files.check_file_name(count, "reads", old="reads") is None
    assert "shadow" in (dag_files.check_file_name(count, "PATH") or "")
    assert "not a valid" in (dag_files.check_file_name(count, "2x") or "")


def test_renaming_an_output_follows_every_reference() -> None:
    document, ids = files_example()
    changes, targets = dag_files.renamed_output(document, ids["count"], "counts", "hits")
    assert changes == [
        (ids["count"], "outputs", {"hits": {"a": "{root}.a.txt", "b": "{root}.b.txt"}}),
        (ids["report"], "inputs", {"counts": "count.hits", "kmers": "index.kmers"}),
    ]
    assert targets == [
        {"from": "report.summary", "to": "results/summary.txt"},
        {"from": "count.hits", "to": "results/counts"},
    ]


def test_a_cycle_through_files_still_opens_and_validation_names_it() -> None:
    data = {
        "version": 1,
        "name": "loop",
        "jobs": [
            {"name": "a", "inputs": {"x": "b.y"}, "outputs": ["x2"], "command": "true"},
            {"name": "b", "inputs": {"z": "a.x2"}, "outputs": ["y"], "command": "true"},
        ],
    }
    document = DagDocument.from_data(data)
    assert len(document) == 2 and document.layered_positions()
    assert any("cycle" in p.message for p in document.validate())


def test_a_dependency_that_would_close_a_cycle_through_files_is_refused() -> None:
    document, ids = files_example()
    reason = document.check_edge(ids["report"], ids["index"])
    assert reason == "that would make a cycle: report runs after index (through files)"
    assert document.check_edge(ids["index"], ids["report"]) is None  # same order: fine


def test_the_first_lines_of_a_text_output_and_none_for_binary(tmp_path: Path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("".join(f"line {k}\n" for k in range(100)))
    assert first_lines(str(text), 3) == "line 0\nline 1\nline 2"
    binary = tmp_path / "a.bin"
    binary.write_bytes(b"\x00\x01\x02")
    assert first_lines(str(binary)) is None
    assert first_lines(str(tmp_path / "missing")) is None
    assert first_lines("gs://bucket/object") is None
