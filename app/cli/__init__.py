"""The `labbatch` command line: `main` parses and dispatches, one module per command group."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point of `labbatch` (kept here so `app.cli:main` stays the console script)."""
    from app.cli.main import main as run

    return run(argv)
