"""MD5 and CRC32C of files, base64-encoded as GCS and Azure report them.

The worker runs on a bare VM: CRC32C uses ``google_crc32c`` or ``crc32c`` when installed and a
table-driven pure-Python version otherwise (slow, ~10 MB/s: only GCS composite objects, which
have no MD5, need it).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

READ_BYTES = 4 << 20


def _table() -> list[int]:
    poly = 0x82F63B78
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def _crc32c_python(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_function() -> Callable[[bytes, int], int]:
    try:
        import google_crc32c

        return lambda data, crc: int(google_crc32c.extend(crc, data))
    except ImportError:
        pass
    try:
        import crc32c

        return lambda data, crc: int(crc32c.crc32c(data, crc))
    except ImportError:
        return _crc32c_python


crc32c_extend = _crc32c_function()


class Hasher:
    """MD5 and/or CRC32C over a stream of chunks."""

    def __init__(self, *, md5: bool = True, crc32c: bool = False) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self._crc: int | None = 0 if crc32c else None

    def update(self, data: bytes) -> None:
        """Feed the next chunk."""
        if self._md5 is not None:
            self._md5.update(data)
        if self._crc is not None:
            self._crc = crc32c_extend(data, self._crc)

    @property
    def md5(self) -> str | None:
        """Base64 MD5 of everything fed so far."""
        return base64.b64encode(self._md5.digest()).decode() if self._md5 else None

    @property
    def crc32c(self) -> str | None:
        """Base64 big-endian CRC32C of everything fed so far."""
        if self._crc is None:
            return None
        return base64.b64encode(self._crc.to_bytes(4, "big")).decode()


def file_hashes(path: Path, *, md5: bool = True, crc32c: bool = False) -> Hasher:
    """Hash a whole file (blocking: call through asyncio.to_thread)."""
    hasher = Hasher(md5=md5, crc32c=crc32c)
    with path.open("rb") as f:
        while chunk := f.read(READ_BYTES):
            hasher.update(chunk)
    return hasher
