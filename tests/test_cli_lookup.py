"""`labbatch log` finds jobs whose names are digits; `labbatch list --json`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import labbatch


def test_digit_names_and_list_json(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    dag = tmp_path / "digits.yaml"
    # job id 1 is named "7", job id 2 is named "1"
    dag.write_text(
        "version: 1\nname: digits\njobs:\n"
        "  - {name: '7', command: echo seven}\n"
        "  - {name: '1', command: echo one}\n"
    )
    assert labbatch("run", str(dag), "--db", db).returncode == 0

    def log(ref: str) -> str:
        shown = labbatch("log", "1", ref, "--db", db)
        assert shown.returncode == 0, shown.stderr
        return shown.stdout

    assert log("1") == "seven\n"  # digits are an id first
    assert log("name:1") == "one\n"  # name: always means the name
    assert log("7") == "seven\n"  # no job 7: the job named "7"
    missing = labbatch("log", "1", "name:9", "--db", db)
    assert missing.returncode != 0 and "no job 'name:9'" in missing.stderr

    listing = labbatch("list", "--json", "--db", db)
    assert listing.returncode == 0, listing.stderr
    [batch] = json.loads(listing.stdout)
    assert (batch["id"], batch["name"], batch["state"], batch["n_jobs"]) == (
        1,
        "digits",
        "success",
        2,
    )
