"""How the batch commands print batches and jobs: a table for people, JSON for programs."""

from __future__ import annotations

from typing import Any

from app.cli.common import print_json
from app.engine.records import BatchInfo, JobInfo
from app.models.units import format_duration

JOB_TABLE_LIMIT = 50


def batch_json(
    batch: BatchInfo, jobs: list[JobInfo], staging: dict[int, dict[str, float]] | None = None
) -> dict[str, Any]:
    return batch_summary_json(batch) | {"jobs": [job_json(j, staging) for j in jobs]}


def batch_summary_json(batch: BatchInfo) -> dict[str, Any]:
    return {
        "id": batch.id,
        "name": batch.name,
        "user": batch.user,
        "billing_project": batch.billing_project,
        "state": batch.state,
        "complete": batch.complete,
        "n_jobs": batch.n_jobs,
        "n_completed": batch.n_completed,
        "n_succeeded": batch.n_succeeded,
        "n_failed": batch.n_failed,
        "n_cancelled": batch.n_cancelled,
        "time_created": batch.time_created,
        "time_completed": batch.time_completed,
        "duration": round(batch.duration_s, 3),
        "attributes": batch.attributes,
    }


def job_json(job: JobInfo, staging: dict[int, dict[str, float]] | None = None) -> dict[str, Any]:
    data = {
        "job_id": job.job_id,
        "name": job.name,
        "state": job.state,
        "exit_code": job.exit_code,
        "error": job.error,
        "attempts": job.n_attempts,
        "instance": job.instance_name,
        "duration": None if job.duration_s is None else round(job.duration_s, 3),
    }
    if staging is not None:  # transfer figures of the last attempt that staged files
        data["staging"] = staging.get(job.job_id)
    return data


def needs_job_rows(batch: BatchInfo, *, as_json: bool) -> bool:
    """Whether ``report`` would show any of the batch's jobs (JSON lists them all; the table
    lists them all up to JOB_TABLE_LIMIT, beyond it only those that did not succeed)."""
    return as_json or batch.n_jobs <= JOB_TABLE_LIMIT or batch.n_succeeded < batch.n_jobs


def report(
    batch: BatchInfo,
    jobs: list[JobInfo],
    *,
    as_json: bool,
    staging: dict[int, dict[str, float]] | None = None,
) -> None:
    if as_json:
        print_json(batch_json(batch, jobs, staging))
        return
    counts = (
        f"{batch.n_succeeded} succeeded, {batch.n_failed} failed, {batch.n_cancelled} cancelled"
    )
    print(
        f"batch {batch.id} {batch.name!r}: {batch.state} in {format_duration(batch.duration_s)}"
        f" — {batch.n_jobs} jobs: {counts}"
    )
    shown = jobs if len(jobs) <= JOB_TABLE_LIMIT else [j for j in jobs if j.state != "Success"]
    print_jobs(shown[:JOB_TABLE_LIMIT], staging or {})
    if len(shown) > JOB_TABLE_LIMIT:
        print(f"  … {len(shown) - JOB_TABLE_LIMIT} more: `labbatch jobs {batch.id}`")


def print_jobs(jobs: list[JobInfo], staging: dict[int, dict[str, float]] | None = None) -> None:
    if not jobs:
        return
    width = max(len(j.name) for j in jobs)
    for job in jobs:
        detail = []
        if job.exit_code is not None:
            detail.append(f"exit {job.exit_code}")
        if job.error:
            detail.append(job.error)
        if job.duration_s is not None and job.state not in ("Pending", "Ready", "Cancelled"):
            detail.append(format_duration(job.duration_s))
        if job.n_attempts > 1:
            detail.append(f"{job.n_attempts} attempts")
        if staging and job.job_id in staging:
            from app.engine.batches.files import staging_text  # rare: keep `status` light

            detail.append(staging_text(staging[job.job_id]))
        print(
            f"  {job.job_id:>6} {job.name:<{width}}  {job.state:<9}  {'  '.join(detail)}".rstrip()
        )
