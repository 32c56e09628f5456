"""Running a job inside a container image with docker or podman."""

from __future__ import annotations

import shutil
from collections.abc import Mapping

from app.protocol import JobRun

RUNTIMES = ("docker", "podman")
# `docker run` / `podman run` exit with 125 when the runtime itself failed.
RUNTIME_FAILED_EXIT = 125
SCRATCH_MOUNT = "/scratch"
BATCH_MOUNT = "/batch"


def find_runtime() -> str | None:
    """The path of docker or podman on PATH, or None."""
    for name in RUNTIMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def no_runtime_error(image: str) -> str:
    """The error of an image job on a worker with no container runtime."""
    return f"image {image!r} needs docker or podman on the worker, and neither is on PATH"


def container_name(run: JobRun) -> str:
    """A name unique to the attempt, so a cancel can `kill` it."""
    return f"labbatch-{run.batch_id}-{run.job_id}-{run.attempt}"


def container_argv(
    runtime: str,
    run: JobRun,
    *,
    scratch_dir: str,
    batch_dir: str,
    job_env: Mapping[str, str],
) -> list[str]:
    """``<runtime> run ... <image> bash -c <command>`` with scratch and batch dir mounted."""
    assert run.image is not None
    argv = [
        runtime,
        "run",
        "--rm",
        "--name",
        container_name(run),
        "-v",
        f"{scratch_dir}:{SCRATCH_MOUNT}",
        "-v",
        f"{batch_dir}:{BATCH_MOUNT}",
        "-w",
        SCRATCH_MOUNT,
    ]
    for key, value in job_env.items():
        argv += ["-e", f"{key}={value}"]
    if run.memory_bytes:
        argv += ["--memory", str(run.memory_bytes)]
    return [*argv, run.image, "bash", "-c", run.command]


def kill_argv(runtime: str, run: JobRun) -> list[str]:
    """``<runtime> kill <name>``, sent best-effort on cancel and timeout."""
    return [runtime, "kill", container_name(run)]
