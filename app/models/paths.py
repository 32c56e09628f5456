"""Where LabBatch keeps its files; light to import (the command line needs it before any DB)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "LABBATCH_HOME"
WORK_DIR_ENV = "LABBATCH_WORK_DIR"


def data_dir() -> Path:
    """The per-user data directory (database, secret key, logs): its owner's only."""
    override = os.environ.get(HOME_ENV)
    if override:
        path = Path(override)
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("labbatch"))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner_only(path, 0o700)  # it holds the master key and the database: no one else's
    return path


def work_dir() -> Path:
    """Where local workers and batch directories live: beside the data dir, never in it.

    Jobs are told paths in here; the data dir holds the master key and the database.
    ``LABBATCH_WORK_DIR`` moves it.
    """
    override = os.environ.get(WORK_DIR_ENV)
    home = data_dir()
    path = Path(override) if override else home.with_name(f"{home.name}-work")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def owner_only(path: Path, mode: int) -> None:
    """Take group and other permissions off ``path`` (an older install may have made it so)."""
    if path.stat().st_mode & 0o077:
        path.chmod(mode)
