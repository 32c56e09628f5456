"""hailtop.batch's helpers that build jobs (`concatenate`, `plink_merge`), and the names of
the ones LabBatch lacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from app.batch.batch import Batch
from app.batch.resources import BatchException, NotSupportedError, ResourceFile, ResourceGroup

R = TypeVar("R")


def concatenate(
    b: Batch, files: Sequence[ResourceFile], image: str | None = None, branching_factor: int = 100
) -> ResourceFile:
    """Concatenate files with `cat` in a tree of jobs `concatenate-<level>-<i>`, each of at
    most `branching_factor` files; the concatenated file (the file itself if alone)."""
    if not files:
        raise BatchException("Must have at least one file to concatenate.")
    if not all(isinstance(file, ResourceFile) for file in files):
        raise BatchException("Invalid input file(s) - all inputs must be resource files.")

    def cat(name: str, group: list[ResourceFile]) -> ResourceFile:
        job = b.new_job(name=name)
        if image is not None:
            job.image(image)
        job.command(f"cat {' '.join(group)} > {job.ofile}")
        return job.ofile  # type: ignore[return-value]

    return _combine(cat, "concatenate", list(files), branching_factor)


def plink_merge(
    b: Batch, bfiles: Sequence[ResourceGroup], image: str | None = None, branching_factor: int = 100
) -> ResourceGroup:
    """Merge binary PLINK filesets (groups with bed, bim, fam) with `plink --merge-list` in a
    tree of jobs `plink-merge-<level>-<i>`; the merged fileset."""
    if not bfiles:
        raise BatchException("Must have at least one binary PLINK file to merge.")
    if not all(isinstance(bfile, ResourceGroup) for bfile in bfiles):
        raise BatchException("Invalid input file(s) - all inputs must be resource groups.")

    def merge(name: str, group: list[ResourceGroup]) -> ResourceGroup:
        if len(group) == 1:
            return group[0]
        job = b.new_job(name=name)
        if image is not None:
            job.image(image)
        job.declare_resource_group(ofile={m: "{root}." + m for m in ("bed", "bim", "fam")})
        for bfile in group[1:]:
            job.command(f'echo "{bfile.bed} {bfile.bim} {bfile.fam}" >> merge_list')
        job.command(f"plink --bfile {group[0]} --merge-list merge_list --out {job.ofile}")
        return job.ofile  # type: ignore[return-value]

    return _combine(merge, "plink-merge", list(bfiles), branching_factor)


def _combine(
    combine: Callable[[str, list[R]], R], name: str, items: list[R], branching_factor: int
) -> R:
    if not isinstance(branching_factor, int) or branching_factor < 2:
        raise BatchException(
            f"branching_factor must be an integer, 2 or more: {branching_factor!r}"
        )
    level = 0
    while len(items) > 1:
        groups = [items[i : i + branching_factor] for i in range(0, len(items), branching_factor)]
        items = [combine(f"{name}-{level}-{i}", group) for i, group in enumerate(groups)]
        level += 1
    return items[0]


def build_python_image(*_args: Any, **_kwargs: Any) -> str:
    """Not supported: Python jobs run on the worker's Python or an image you build."""
    raise NotSupportedError(
        "build_python_image (building a Docker image for Python jobs): build it with docker and "
        "give it to the job with .image(), or run Python jobs on a pool's own Python"
    )


class BatchPoolExecutor:
    """Not supported: hailtop.batch's concurrent.futures executor."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        raise NotSupportedError(
            "BatchPoolExecutor: use a Batch of Python jobs (b.new_python_job().call) instead"
        )
