"""Who the current user is, for the command line and the desktop alike."""

from __future__ import annotations

import getpass
import os

USER_ENV = "LABBATCH_USER"


def default_user() -> str:
    """``$LABBATCH_USER``, else the login name."""
    return os.environ.get(USER_ENV) or getpass.getuser()
