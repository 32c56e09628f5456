"""Where LabBatch keeps its files; light to import (the command line needs it before any DB)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "LABBATCH_HOME"


def data_dir() -> Path:
    """The per-user data directory (database, worker files, secret key)."""
    override = os.environ.get(HOME_ENV)
    if override:
        path = Path(override)
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("labbatch"))
    path.mkdir(parents=True, exist_ok=True)
    return path
