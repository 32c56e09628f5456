"""The first lines of a kept output file, when it is text (for the desktop's file view)."""

from __future__ import annotations

from pathlib import Path

PREVIEW_BYTES = 8192


def first_lines(path: str, n_lines: int = 20) -> str | None:
    """Up to `n_lines` lines of a local text file; None when binary, not local or unreadable."""
    if "://" in path:
        return None
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(PREVIEW_BYTES)
    except OSError:
        return None
    if b"\0" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not a character cut at the end of the read
            return None
        text = head[: exc.start].decode("utf-8")
    return "\n".join(text.splitlines()[:n_lines])
