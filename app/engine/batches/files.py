"""Files between jobs in the engine: what a job's stored spec says about its files, the URLs
of an attempt's transfers, and where a pool keeps its scratch files.

A job's outputs live at `<scratch>/<batch id>/<job id>/<name><ext>` (attempt-independent, so
a retry of a child anywhere finds them). The spec of a job with files holds:

    "files": {"in":  [{"name", "local", "url"} | {"name", "local", "job", "pool", "key"}],
              "out": [{"name", "local", "pool", "key"} | {"name", "local", "url"}],
              "paths": {name: local}}

where `url` is a batch input or destination (an absolute path or a URL) and `job`/`pool`/`key`
name a file in a job's scratch directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.errors import UserError
from app.models.file_plan import JobFiles, input_copies, plan_files
from app.models.files import BatchOutput, is_local
from app.models.spec import BatchSpec, JobSpec
from app.models.units import format_size
from app.protocol import FileTransfer

DEFAULT_RETENTION_S = 3 * 86400.0
SCRATCH_DIR = "scratch"


def scratch_root(configured: str | None, data_dir: Path) -> str:
    """A pool's scratch location: its setting, else `<data dir>/scratch`."""
    return configured or str(data_dir / SCRATCH_DIR)


def scratch_location(root: str, batch_id: int, job_id: int, key: str) -> str:
    """Where one file of a job's outputs is kept."""
    return f"{root.rstrip('/')}/{batch_id}/{job_id}/{key}"


def to_url(location: str) -> str:
    """An absolute path as a file:// URL; URLs as they are."""
    return Path(location).as_uri() if is_local(location) else location


# ---------------------------------------------------------------------------------------------
# At submit: the files of each job, by job id


def files_by_job(
    spec: BatchSpec, ids: Mapping[str, int], pool_of: Callable[[JobSpec], str]
) -> dict[str, Any]:
    """Job name -> the `files` entry of its stored spec, for the jobs that have files."""
    if not spec.inputs and not spec.outputs and not any(_has_files(j) for j in spec.jobs):
        return {}
    pools = {job.name: pool_of(job) for job in spec.jobs}
    planned = plan_files(spec.jobs, spec.inputs, spec.outputs)
    return {name: _files_data(files, ids, pools, pools[name]) for name, files in planned.items()}


def _has_files(job: JobSpec) -> bool:
    return bool(job.inputs or job.outputs)


def _files_data(
    files: JobFiles, ids: Mapping[str, int], pools: Mapping[str, str], own_pool: str
) -> dict[str, Any]:
    staged = []
    for item in files.inputs:
        entry: dict[str, Any] = {"name": item.name, "local": item.local}
        if item.location is not None:
            entry["url"] = item.location
        else:
            assert item.job is not None
            entry.update(job=ids[item.job], pool=pools[item.job], key=item.key)
        staged.append(entry)
    saved = []
    for out in files.outputs:
        entry = {"name": out.name, "local": out.local}
        if out.destination is not None:
            entry["url"] = out.destination
        else:
            entry.update(pool=own_pool, key=out.key)
        saved.append(entry)
    return {"in": staged, "out": saved, "paths": dict(files.paths)}


def copy_batch_inputs(inputs: Mapping[str, Any], outputs: tuple[BatchOutput, ...]) -> None:
    """Copy the batch outputs that name a batch input (at submit, before anything is stored)."""
    for source, dest in input_copies(inputs, outputs):
        if not is_local(source) or not is_local(dest):
            raise UserError(
                f"copying the batch input {source} to {dest}: only local files can be "
                "copied to a destination yet"
            )
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            temp = f"{dest}.part"
            shutil.copyfile(source, temp)
            os.replace(temp, dest)
        except OSError as exc:
            raise UserError(
                f"cannot copy the batch input {source} to {dest}: {exc.strerror or exc}"
            ) from exc


# ---------------------------------------------------------------------------------------------
# At schedule: an attempt's transfers


def transfers(
    files: Mapping[str, Any], batch_id: int, job_id: int, scratch_of: Callable[[str], str]
) -> dict[str, Any]:
    """The JobRun fields (inputs, outputs, paths) of a job's stored `files` entry."""

    def url_of(entry: Mapping[str, Any], owner: int) -> str:
        if "url" in entry:
            return to_url(entry["url"])
        root = scratch_of(entry["pool"])
        return to_url(scratch_location(root, batch_id, owner, entry["key"]))

    return {
        "inputs": tuple(
            FileTransfer(local=e["local"], url=url_of(e, e.get("job", 0)), name=e["name"])
            for e in files.get("in", ())
        ),
        "outputs": tuple(
            FileTransfer(local=e["local"], url=url_of(e, job_id), name=e["name"])
            for e in files.get("out", ())
        ),
        "paths": dict(files.get("paths") or {}),
    }


def staging_text(staging: dict[str, float]) -> str:
    """One line for people: `files in 1.2 MB 0.01s, out 3 MB 0.02s (linked 4.2 MB)`."""
    moved = []
    if staging.get("linked_bytes"):
        moved.append(f"linked {format_size(staging['linked_bytes'])}")
    if staging.get("copied_bytes"):
        moved.append(f"copied {format_size(staging['copied_bytes'])}")
    if staging.get("cache_hits"):
        saved = staging.get("cache_bytes_saved")
        moved.append(
            f"{int(staging['cache_hits'])} from cache"
            + (f", {format_size(saved)} saved" if saved else "")
        )
    tail = f" ({', '.join(moved)})" if moved else ""
    return (
        f"files in {format_size(staging.get('in_bytes', 0))} {staging.get('in_s', 0):.2f}s, "
        f"out {format_size(staging.get('out_bytes', 0))} {staging.get('out_s', 0):.2f}s{tail}"
    )
