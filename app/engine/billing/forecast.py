"""Forecast what a batch will cost and how long it will take on a pool, before submitting it.

Pure: jobs, pool size and rates in, an Estimate out. Each job gets a low and a high duration:
- `expected_duration_s` when the job gives one (low = high), capped at its timeout;
- otherwise, with a timeout: high = the timeout (a job never runs longer) and low = a quarter of
  it (timeouts are usually set a few times above the usual run time);
- otherwise `default_duration_s` for both.
The cost is Σ quantity * rate * duration over jobs, with low and with high durations: what the
attempts are billed, without idle or booting workers, retries or preemptions. The time runs from
a lower bound, max(critical path, core-seconds / pool cores) with low durations, to a greedy
list-scheduling simulation of the pool with high durations.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from app.engine.billing.rates import attempt_quantities, format_usd, hourly_cost_usd
from app.errors import InvalidInputError
from app.models.spec import JobSpec
from app.models.units import format_duration, format_mcpu

TIMEOUT_LOW_FRACTION = 0.25
_MAX_NAMED_JOBS = 3
_EN_DASH, _TIMES = "\u2013", "\u00d7"  # escaped: ruff flags the look-alike characters

QuantitiesFor = Callable[[JobSpec], Mapping[str, Decimal]]


@dataclass(frozen=True, slots=True)
class Estimate:
    """The cost and run time a batch is expected to take on a pool, as ranges."""

    n_jobs: int
    cost_usd_low: Decimal
    cost_usd_high: Decimal
    duration_s_low: float
    duration_s_high: float
    assumptions: tuple[str, ...]
    n_workers: int
    worker_cores_mcpu: int
    pool: str | None = None


def quantities_for_pool(
    *,
    cloud: str,
    family_or_size: str,
    region: str,
    worker_cores_mcpu: int,
    preemptible: bool | None = None,
) -> QuantitiesFor:
    """A `quantities_for` for estimate_batch: attempt_quantities of each job on this pool.

    preemptible None takes each job's own flag.
    """

    # Jobs come in a few shapes: one mapping per shape, shared (estimate_batch then prices
    # each shape once).
    by_shape: dict[tuple[int, int, int, bool], Mapping[str, Decimal]] = {}

    def quantities_for(job: JobSpec) -> Mapping[str, Decimal]:
        job_preemptible = job.preemptible if preemptible is None else preemptible
        shape = (job.cores_mcpu, job.memory_bytes, job.storage_bytes, job_preemptible)
        quantities = by_shape.get(shape)
        if quantities is None:
            quantities = by_shape[shape] = MappingProxyType(
                attempt_quantities(
                    cloud=cloud,
                    family_or_size=family_or_size,
                    region=region,
                    preemptible=job_preemptible,
                    worker_cores_mcpu=worker_cores_mcpu,
                    cores_mcpu=job.cores_mcpu,
                    memory_bytes=job.memory_bytes,
                    storage_bytes=job.storage_bytes,
                )
            )
        return quantities

    return quantities_for


def estimate_batch(
    jobs: Sequence[JobSpec],
    *,
    worker_cores_mcpu: int,
    n_workers: int,
    rates: Mapping[str, Decimal],
    quantities_for: QuantitiesFor,
    default_duration_s: float = 60.0,
    pool: str | None = None,
) -> Estimate:
    """Estimate cost and run time of jobs (in topological order) on n_workers workers."""
    if worker_cores_mcpu <= 0 or n_workers <= 0:
        raise ValueError(
            f"a pool needs workers with cores, got {n_workers} x {worker_cores_mcpu} mcpu"
        )
    _check_jobs_fit(jobs, worker_cores_mcpu)
    low_s, high_s, assumptions = _durations(jobs, default_duration_s)
    parents = _parent_indices(jobs)
    cores_mcpu = [job.cores_mcpu for job in jobs]

    cost_low, cost_high = _cost_range(jobs, rates, quantities_for, low_s, high_s)
    pool_mcpu = worker_cores_mcpu * n_workers
    work_bound_s = sum(c * d for c, d in zip(cores_mcpu, low_s, strict=True)) / pool_mcpu
    duration_low = max(_critical_path_s(parents, low_s), work_bound_s)
    duration_high = _simulate_makespan_s(
        parents, cores_mcpu, high_s, worker_cores_mcpu=worker_cores_mcpu, n_workers=n_workers
    )
    assumptions += [
        "costs count the time jobs run, not idle or booting workers",
        "no retries or preemptions (each rerun is billed again)",
    ]
    return Estimate(
        n_jobs=len(jobs),
        cost_usd_low=cost_low,
        cost_usd_high=cost_high,
        duration_s_low=duration_low,
        duration_s_high=max(duration_high, duration_low),
        assumptions=tuple(assumptions),
        n_workers=n_workers,
        worker_cores_mcpu=worker_cores_mcpu,
        pool=pool,
    )


def _check_jobs_fit(jobs: Sequence[JobSpec], worker_cores_mcpu: int) -> None:
    too_big = [job.name for job in jobs if job.cores_mcpu > worker_cores_mcpu]
    if too_big:
        named = ", ".join(too_big[:_MAX_NAMED_JOBS]) + (
            ", …" if len(too_big) > _MAX_NAMED_JOBS else ""
        )
        raise InvalidInputError(
            f"{len(too_big)} job(s) ask for more cores than a worker of this pool has "
            f"({format_mcpu(worker_cores_mcpu)}): {named}; they would never run. "
            "Ask for fewer cores or use a pool with bigger workers."
        )


def _durations(
    jobs: Sequence[JobSpec], default_duration_s: float
) -> tuple[list[float], list[float], list[str]]:
    """Each job's low and high duration, and what had to be assumed to get them."""
    low_s, high_s = [], []
    n_timeout_only = n_default = 0
    for job in jobs:
        expected_s = getattr(job, "expected_duration_s", None)
        if expected_s is not None:
            if job.timeout_s is not None:
                expected_s = min(expected_s, job.timeout_s)  # killed at its timeout
            low_s.append(expected_s)
            high_s.append(expected_s)
        elif job.timeout_s is not None:
            n_timeout_only += 1
            low_s.append(job.timeout_s * TIMEOUT_LOW_FRACTION)
            high_s.append(job.timeout_s)
        else:
            n_default += 1
            low_s.append(default_duration_s)
            high_s.append(default_duration_s)
    assumptions = []
    if n_timeout_only:
        assumptions.append(
            f"{_jobs(n_timeout_only)} only a timeout; assumed to run between "
            "a quarter of it and all of it"
        )
    if n_default:
        assumptions.append(
            f"{_jobs(n_default)} no expected_duration or timeout; "
            f"assumed {format_duration(default_duration_s)} each"
        )
    return low_s, high_s, assumptions


def _jobs(n: int) -> str:
    return "1 job has" if n == 1 else f"{n:,} jobs have"


def _parent_indices(jobs: Sequence[JobSpec]) -> list[tuple[int, ...]]:
    index = {job.name: i for i, job in enumerate(jobs)}
    parents: list[tuple[int, ...]] = []
    for i, job in enumerate(jobs):
        if not job.depends_on:
            parents.append(())
            continue
        try:
            job_parents = tuple([index[name] for name in job.depends_on])
        except KeyError as exc:
            raise ValueError(f"job {job.name!r} depends on unknown job {exc.args[0]!r}") from None
        if max(job_parents) >= i:
            raise ValueError(f"jobs are not in topological order: {job.name!r} precedes a parent")
        parents.append(job_parents)
    return parents


def _cost_range(
    jobs: Sequence[JobSpec],
    rates: Mapping[str, Decimal],
    quantities_for: QuantitiesFor,
    low_s: Sequence[float],
    high_s: Sequence[float],
) -> tuple[Decimal, Decimal]:
    # Jobs share a few quantity mappings (see quantities_for_pool) and fewer hourly costs: price
    # each mapping once, sum the seconds per hourly cost, multiply at the end.
    priced: dict[int, tuple[Mapping[str, Decimal], list[float]]] = {}  # id -> (mapping, s)
    for job, low, high in zip(jobs, low_s, high_s, strict=True):
        quantities = quantities_for(job)
        entry = priced.get(id(quantities))
        if entry is None:  # the mapping is kept in the entry, so its id stays unique
            entry = priced[id(quantities)] = (quantities, [0.0, 0.0])
        seconds = entry[1]
        seconds[0] += low
        seconds[1] += high
    cost_low = cost_high = Decimal(0)
    for quantities, (low, high) in priced.values():
        usd_per_hour = hourly_cost_usd(quantities, rates)
        cost_low += usd_per_hour * Decimal(low)
        cost_high += usd_per_hour * Decimal(high)
    return cost_low / 3600, cost_high / 3600


def _critical_path_s(parents: Sequence[tuple[int, ...]], duration_s: Sequence[float]) -> float:
    """The longest chain of durations through the DAG (parents precede children)."""
    end_s: list[float] = []
    for job_parents, d in zip(parents, duration_s, strict=True):
        end_s.append(max([end_s[p] for p in job_parents]) + d if job_parents else d)
    return max(end_s, default=0.0)


def _simulate_makespan_s(
    parents: Sequence[tuple[int, ...]],
    cores_mcpu: Sequence[int],
    duration_s: Sequence[float],
    *,
    worker_cores_mcpu: int,
    n_workers: int,
) -> float:
    """Run the DAG on the pool greedily: whenever cores are free, start the first ready job
    (in topological order) that fits, on the worker with the fewest free cores that fits
    (best fit, as the scheduler places). O(n log n) for a few distinct job sizes."""
    heappush, heappop, bisect_left = heapq.heappush, heapq.heappop, bisect.bisect_left
    child_start, child_flat = _children(parents)
    n_pending = [len(p) for p in parents]
    sizes = sorted(set(cores_mcpu))
    slot_of_size = {size: k for k, size in enumerate(sizes)}
    slot = [slot_of_size[c] for c in cores_mcpu]
    ready: list[list[int]] = [[] for _ in sizes]  # per size, a heap of job indices
    for i, pending in enumerate(n_pending):
        if not pending:
            ready[slot[i]].append(i)  # indices ascend: each list is already a heap
    free_mcpu = [worker_cores_mcpu] * n_workers
    holes = [(worker_cores_mcpu, w) for w in range(n_workers)]  # sorted (free mcpu, worker)
    running: list[tuple[float, int, int]] = []  # heap of (end s, job, worker)
    now_s = 0.0
    while True:
        while holes:
            most_free = holes[-1][0]
            best = -1
            for size, queue in zip(sizes, ready, strict=True):
                if size > most_free:
                    break
                if queue and (best < 0 or queue[0] < best):
                    best = queue[0]
            if best < 0:
                break
            size = cores_mcpu[best]
            heappop(ready[slot[best]])
            free, worker = holes.pop(bisect_left(holes, (size, -1)))
            _set_free(holes, free_mcpu, worker, free - size)
            heappush(running, (now_s + duration_s[best], best, worker))
        if not running:
            return now_s
        now_s = running[0][0]
        while running and running[0][0] == now_s:
            _, job, worker = heappop(running)
            free = free_mcpu[worker]
            if free:
                del holes[bisect_left(holes, (free, worker))]
            _set_free(holes, free_mcpu, worker, free + cores_mcpu[job])
            for child in child_flat[child_start[job] : child_start[job + 1]]:
                n_pending[child] -= 1
                if not n_pending[child]:
                    heappush(ready[slot[child]], child)


def _children(parents: Sequence[tuple[int, ...]]) -> tuple[list[int], list[int]]:
    """The children of each job as flat lists: job j's are flat[start[j] : start[j + 1]].

    Two lists of ints rather than a list per job: far fewer objects for the garbage collector.
    """
    start = [0] * (len(parents) + 1)
    for job_parents in parents:
        for parent in job_parents:
            start[parent + 1] += 1
    for j in range(len(parents)):
        start[j + 1] += start[j]
    flat = [0] * start[-1]
    cursor = start[:-1]
    for child, job_parents in enumerate(parents):
        for parent in job_parents:
            flat[cursor[parent]] = child
            cursor[parent] += 1
    return start, flat


def _set_free(holes: list[tuple[int, int]], free_mcpu: list[int], worker: int, free: int) -> None:
    """Record a worker's free cores; holes lists only workers with some free."""
    free_mcpu[worker] = free
    if free:
        bisect.insort(holes, (free, worker))


def format_estimate(estimate: Estimate) -> str:
    """One paragraph for the CLI: cost and time ranges, the pool, and the assumptions."""
    low_usd, high_usd = estimate.cost_usd_low, estimate.cost_usd_high
    decimals = 4 if 0 < min(low_usd, high_usd) < Decimal("0.01") else 2  # one precision for both
    cost = _range(
        format_usd(low_usd, decimals=decimals), format_usd(high_usd, decimals=decimals), _EN_DASH
    )
    low_s, high_s = (
        _short_duration(estimate.duration_s_low),
        _short_duration(estimate.duration_s_high),
    )
    time = _range(low_s, high_s, f" {_EN_DASH} ")
    pool = f"pool {estimate.pool} " if estimate.pool else "a pool "
    workers = "1 worker" if estimate.n_workers == 1 else f"{estimate.n_workers} workers"
    cores = format_mcpu(estimate.worker_cores_mcpu)
    jobs = "1 job" if estimate.n_jobs == 1 else f"{estimate.n_jobs:,} jobs"
    text = (
        f"Expected cost {cost} over {time} for {jobs} on {pool}"
        f"({workers} {_TIMES} {cores} {'core' if cores == '1' else 'cores'})."
    )
    if estimate.assumptions:
        text += " Assumptions: " + "; ".join(estimate.assumptions) + "."
    return text


def _range(low: str, high: str, dash: str) -> str:
    return low if low == high else f"{low}{dash}{high}"


def _short_duration(seconds: float) -> str:
    return format_duration(round(seconds) if seconds >= 10 else round(seconds, 1))
