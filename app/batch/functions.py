"""hailtop.batch's helper functions that build jobs: `concatenate`."""

from __future__ import annotations

from collections.abc import Sequence

from app.batch.batch import Batch
from app.batch.resources import BatchException, ResourceFile


def concatenate(
    b: Batch, files: Sequence[ResourceFile], image: str | None = None, branching_factor: int = 100
) -> ResourceFile:
    """Concatenate files with `cat`, in a tree of jobs `concatenate-<level>-<i>` of
    `branching_factor` files each; return the concatenated file (the file itself if alone)."""
    if not files:
        raise BatchException("Must have at least one file to concatenate.")
    if not all(isinstance(file, ResourceFile) for file in files):
        raise BatchException("Invalid input file(s) - all inputs must be resource files.")
    if not isinstance(branching_factor, int) or branching_factor < 2:
        raise BatchException(
            f"branching_factor must be an integer of 2 or more, not {branching_factor!r}"
        )
    level = 0
    layer = list(files)
    while len(layer) > 1:
        groups = [layer[i : i + branching_factor] for i in range(0, len(layer), branching_factor)]
        layer = [
            _cat(b, f"concatenate-{level}-{i}", group, image) for i, group in enumerate(groups)
        ]
        level += 1
    return layer[0]


def _cat(b: Batch, name: str, files: list[ResourceFile], image: str | None) -> ResourceFile:
    job = b.new_job(name=name)
    if image is not None:
        job.image(image)
    job.command(f"cat {' '.join(files)} > {job.ofile}")
    return job.ofile  # type: ignore[return-value]
