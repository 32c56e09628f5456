"""A spec back to DAG file data: what `labbatch import` writes and the tests round-trip."""

from __future__ import annotations

from typing import Any

from app.models.job_fields import FORMAT_VERSION, retry_to_dict, whole_or_float
from app.models.spec import BatchSpec, JobSpec
from app.models.units import format_bytes, parse_bytes


def spec_to_dict(spec: BatchSpec) -> dict[str, Any]:
    """Turn a spec back into DAG file data (version 1) that parses to an equal spec.

    An expanded scatter is written as its jobs; an unexpanded one as its `scatter` key.
    """
    data: dict[str, Any] = {"version": FORMAT_VERSION, "name": spec.name}
    if spec.attributes:
        data["attributes"] = dict(spec.attributes)
    if spec.billing_project != "default":
        data["billing_project"] = spec.billing_project
    if spec.cancel_after_n_failures is not None:
        data["cancel_after_n_failures"] = spec.cancel_after_n_failures
    if spec.inputs:
        data["inputs"] = {
            name: loc if isinstance(loc, str) else dict(loc) for name, loc in spec.inputs.items()
        }
    data["jobs"] = [_job_to_dict(job) for job in spec.jobs]
    if spec.outputs:
        data["outputs"] = [{"from": out.source, "to": out.to} for out in spec.outputs]
    return data


def _job_to_dict(job: JobSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": job.name, "command": job.command}
    if job.depends_on:
        data["depends_on"] = list(job.depends_on)
    memory = job.memory_class or _exact_size(job.memory_bytes)
    optional_fields: tuple[tuple[str, Any, Any], ...] = (  # (key, value, default)
        ("scatter", job.scatter.to_data() if job.scatter else None, None),
        ("image", job.image, None),
        ("env", dict(job.env), {}),
        ("cpu", whole_or_float(job.cores_mcpu / 1000), 1),
        ("memory", memory, "standard"),
        ("storage", _exact_size(job.storage_bytes), 0),
        ("timeout", _seconds_or_none(job.timeout_s), None),
        ("always_run", job.always_run, False),
        ("n_max_attempts", job.n_max_attempts, 3),
        ("preemptible", job.preemptible, True),
        ("regions", list(job.regions) if job.regions else None, None),
        ("machine_type", job.machine_type, None),
        ("pool", job.pool, None),
        ("attributes", dict(job.attributes), {}),
        ("expected_duration", _seconds_or_none(job.expected_duration_s), None),
        ("retry", retry_to_dict(job.retry) if job.retry else None, None),
        ("inputs", dict(job.inputs), {}),
        ("outputs", {name: shape.to_data() for name, shape in job.outputs.items()}, {}),
    )
    data.update((key, value) for key, value, default in optional_fields if value != default)
    return data


def _exact_size(size_bytes: int) -> str | int:
    text = format_bytes(size_bytes)
    return text if text.endswith("i") and parse_bytes(text) == size_bytes else size_bytes


def _seconds_or_none(duration_s: float | None) -> int | float | None:
    return None if duration_s is None else whole_or_float(duration_s)
