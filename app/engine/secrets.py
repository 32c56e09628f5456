"""Worker tokens, derived from one master key so the database never holds them.

A token is HMAC-SHA256(master key, instance name). Any process with the master key (the
driver, or a desktop that takes the lease over) can dial a worker; the database and the logs
never see a token. The key comes from ``LABBATCH_SECRET_KEY`` or a 0600 file in the data dir.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from functools import cache

from app.models.db import data_dir

KEY_ENV = "LABBATCH_SECRET_KEY"
KEY_FILE = "secret.key"


@cache
def _master_key() -> bytes:
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = data_dir() / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_urlsafe(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key


def worker_token(instance_name: str) -> str:
    """The secret a worker named ``instance_name`` accepts."""
    digest = hmac.new(_master_key(), b"worker:" + instance_name.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def forget_cached_key() -> None:
    """Re-read the key next time (tests switch data dirs)."""
    _master_key.cache_clear()


def key_check() -> str:
    """A fingerprint of the master key, safe to store: which key a worker's token came from.

    It is an HMAC of a fixed text, so it tells nothing about the key or any token.
    """
    return hmac.new(_master_key(), b"labbatch key check", hashlib.sha256).hexdigest()[:16]
