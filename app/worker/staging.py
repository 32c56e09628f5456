"""Staging an attempt's files: inputs in place before the command, outputs saved after it.

Local (`file://`) files are hard-linked where the file system allows (no byte copied), else
cloned or copied; an output is written under a temporary name and renamed, so a half-written
file is never visible at its final path. Signed `http(s)://` transfers (cloud pools) go
through `remote.py`: `transfer.py` moves the bytes, `cache.py` keeps inputs for later attempts.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from app.protocol import FileTransfer, JobRun
from app.worker.remote import RemoteFiles, fetch_inputs
from app.worker.remote import save_outputs as upload_outputs
from app.worker.transfer import TransferError

# errno of a link that cannot be made (another file system, no hard links, protected links)
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES}
_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\}\}")
_COPY_CHUNK = 1 << 26
# a transfer URL the driver could not sign carries the reason instead
SIGNING_FAILED = "error:"


class StagingError(Exception):
    """A file could not be staged or saved; the message is for the user."""


class OutputNotWritten(StagingError):
    """The command exited 0 without writing a declared output."""


@dataclass(slots=True)
class Stats:
    """What one attempt's staging moved, and how."""

    in_bytes: int = 0
    in_s: float = 0.0
    out_bytes: int = 0
    out_s: float = 0.0
    linked_bytes: int = 0
    copied_bytes: int = 0
    cache_hits: int = 0
    cache_bytes_saved: int = 0

    def to_dict(self) -> dict[str, float]:
        """The JobResult.staging form, seconds rounded to the millisecond."""
        data: dict[str, float] = asdict(self)
        data["in_s"] = round(self.in_s, 3)
        data["out_s"] = round(self.out_s, 3)
        return data


def has_files(run: JobRun) -> bool:
    """Whether an attempt has anything to stage (the usual job has not)."""
    return bool(run.inputs or run.outputs)


def file_env(run: JobRun, base: str) -> dict[str, str]:
    """$name (and $name_member) -> the absolute path, for every input and output."""
    return {name.replace(".", "_"): f"{base}/{local}" for name, local in run.paths.items()}


def substitute(command: str, paths: Mapping[str, str], base: str) -> str:
    """Replace {{name}} and {{name.member}} by absolute paths; leave other text alone."""
    if "{{" not in command or not paths:
        return command

    def path_of(match: re.Match[str]) -> str:
        local = paths.get(match.group(1))
        return match.group(0) if local is None else f"{base}/{local}"

    return _PLACEHOLDER.sub(path_of, command)


async def stage_inputs(
    run: JobRun, cwd: str, stats: Stats, remote: RemoteFiles | None = None
) -> None:
    """Put every input in place under `cwd` and make `out/`; StagingError if one fails.

    `file://` inputs are linked; signed `https://` ones are downloaded through `remote`'s cache.
    """
    started = time.monotonic()
    local, signed = _by_scheme(run.inputs, "input", remote)
    await asyncio.to_thread(_stage_local, local, cwd, stats)
    if signed and remote is not None:
        items = [(t, Path(cwd) / t.local) for t in signed]
        try:
            got = await fetch_inputs(remote.session(), items, remote.cache)
        except (TransferError, OSError) as exc:
            raise StagingError(f"input: {exc}") from None
        stats.in_bytes += got.in_bytes + got.cache_bytes_saved
        stats.cache_hits += got.cache_hits
        stats.cache_bytes_saved += got.cache_bytes_saved
    stats.in_s += time.monotonic() - started


async def save_outputs(
    run: JobRun, cwd: str, stats: Stats, remote: RemoteFiles | None = None
) -> None:
    """Save every declared output; OutputNotWritten or StagingError if one fails."""
    started = time.monotonic()
    local, signed = _by_scheme(run.outputs, "output", remote)
    await asyncio.to_thread(_check_written, signed, cwd)  # _save_local checks the local ones
    await asyncio.to_thread(_save_local, local, cwd, stats)
    if signed and remote is not None:
        items = [(Path(cwd) / t.local, t) for t in signed]
        try:
            saved = await upload_outputs(remote.session(), items)
        except TransferError as exc:
            raise StagingError(f"output: {exc}") from None
        stats.out_bytes += saved.out_bytes
    stats.out_s += time.monotonic() - started


def _by_scheme(
    transfers: tuple[FileTransfer, ...], kind: str, remote: RemoteFiles | None
) -> tuple[list[FileTransfer], list[FileTransfer]]:
    """(file:// transfers, signed http(s) transfers); StagingError for any other scheme."""
    local, signed = [], []
    for transfer in transfers:
        scheme = transfer.url.split("://", 1)[0].lower()
        if transfer.url.startswith(SIGNING_FAILED):  # the driver could not sign it: say why
            raise StagingError(f"{kind} `{transfer.name}`: {transfer.url[len(SIGNING_FAILED) :]}")
        if scheme == "file":
            local.append(transfer)
        elif scheme in ("https", "http") and remote is not None:
            signed.append(transfer)
        else:
            raise StagingError(
                f"{kind} `{transfer.name}`: this worker cannot transfer {scheme}:// files "
                f"({_shown(transfer.url)})"
            )
    return local, signed


def _stage_local(transfers: list[FileTransfer], cwd: str, stats: Stats) -> None:
    os.makedirs(f"{cwd}/out", exist_ok=True)
    made: set[str] = set()
    for transfer in transfers:
        source = _path_of(transfer.url)
        dest = f"{cwd}/{transfer.local}"
        parent = os.path.dirname(dest)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        try:
            size = os.stat(source).st_size
            if os.path.isdir(source):
                raise IsADirectoryError(errno.EISDIR, "is a directory, not a file")
            _place(source, dest, stats)
        except OSError as exc:
            raise StagingError(
                f"input `{transfer.name}`: cannot read {source}: {exc.strerror or exc}"
            ) from exc
        stats.in_bytes += size


def _check_written(transfers: list[FileTransfer], cwd: str) -> None:
    for transfer in transfers:
        source = f"{cwd}/{transfer.local}"
        if not os.path.isfile(source):
            if os.path.isdir(source):
                raise OutputNotWritten(f"output `{transfer.name}` is a directory, not a file")
            raise OutputNotWritten(f"output `{transfer.name}` was not written")


def _save_local(transfers: list[FileTransfer], cwd: str, stats: Stats) -> None:
    _check_written(transfers, cwd)
    for transfer in transfers:
        source = f"{cwd}/{transfer.local}"
        dest = _path_of(transfer.url)
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            temp = f"{os.path.dirname(dest)}/.{os.path.basename(dest)}.{uuid.uuid4().hex[:8]}.part"
            try:
                _place(source, temp, stats)
                os.replace(temp, dest)
            finally:
                if os.path.lexists(temp):
                    os.unlink(temp)
        except OSError as exc:
            raise StagingError(
                f"could not save output `{transfer.name}` to {dest}: {exc.strerror or exc}"
            ) from exc
        stats.out_bytes += os.stat(dest).st_size


def _place(source: str, dest: str, stats: Stats) -> None:
    """Hard-link `source` at `dest`, or clone/copy it where no link can be made."""
    if os.path.lexists(dest):
        os.unlink(dest)
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    else:
        stats.linked_bytes += os.stat(dest).st_size
        return
    stats.copied_bytes += _copy(source, dest)


def _copy(source: str, dest: str) -> int:
    """Copy a file's bytes with copy_file_range (a reflink where the file system can)."""
    with open(source, "rb") as src, open(dest, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(src.fileno(), dst.fileno(), _COPY_CHUNK)
                if n == 0:
                    break
                copied += n
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            shutil.copyfileobj(src, dst, 1 << 20)  # positions are where the range copy ended
            copied = size
    os.chmod(dest, os.stat(source).st_mode & 0o777)
    return copied


def _path_of(url: str) -> str:
    return unquote(urlsplit(url).path)


def _shown(url: str) -> str:
    """A URL without its query string (a signed URL's query is a credential)."""
    return url.split("?", 1)[0]
