"""Batch forecasts: cost and time ranges on a pool (no Qt, no DB)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.billing.forecast import (
    Estimate,
    estimate_batch,
    format_estimate,
    quantities_for_pool,
)
from app.engine.billing.rates import load_price_table, local_rates
from app.errors import InvalidInputError
from app.models.spec import JobSpec

D = Decimal
GIB = 1024**3
PRICE_PER_CORE_HOUR = D("0.05")


def job(
    name: str,
    *parents: str,
    s: float | None = None,
    cpu: float = 1,
    timeout_s: float | None = None,
) -> JobSpec:
    return JobSpec(
        name=name,
        command="true",
        depends_on=parents,
        cores_mcpu=int(cpu * 1000),
        timeout_s=timeout_s,
        expected_duration_s=s,
    )


def local_estimate(
    jobs: list[JobSpec], *, n_workers: int = 2, worker_cores: int = 2, **kwargs: object
) -> Estimate:
    worker_cores_mcpu = worker_cores * 1000
    return estimate_batch(
        jobs,
        worker_cores_mcpu=worker_cores_mcpu,
        n_workers=n_workers,
        rates=local_rates(PRICE_PER_CORE_HOUR),
        quantities_for=quantities_for_pool(
            cloud="local", family_or_size="", region="", worker_cores_mcpu=worker_cores_mcpu
        ),
        **kwargs,  # type: ignore[arg-type]
    )


TIME_CASES = [
    # (jobs, n_workers, worker cores, low s, high s); pools default to 2 workers x 2 cores
    pytest.param([], 2, 2, 0, 0, id="empty"),
    pytest.param(
        [job("a", s=10), job("b", "a", s=10), job("c", "b", s=10), job("d", "c", s=10)],
        2,
        2,
        40,
        40,
        id="chain-is-its-critical-path",
    ),
    pytest.param([job(f"j{i}", s=10) for i in range(8)], 2, 2, 20, 20, id="parallel-fills-pool"),
    pytest.param([job(f"j{i}", s=10) for i in range(5)], 2, 2, 12.5, 20, id="parallel-one-over"),
    pytest.param(
        [job("a", s=10), job("b", "a", s=20), job("c", "a", s=5), job("d", "b", "c", s=10)],
        4,
        4,
        40,
        40,
        id="diamond",
    ),
    pytest.param(
        [job("big1", s=10, cpu=2), job("small", s=10), job("big2", s=10, cpu=2)],
        1,
        2,
        25,
        30,
        id="big-jobs-wait-for-a-whole-worker",
    ),
    pytest.param(
        [job("a", s=10), job("b", s=10), job("c", s=10, cpu=2)],
        2,
        2,
        10,
        10,
        id="best-fit-keeps-a-worker-whole",
    ),
    pytest.param([job("t", timeout_s=100)], 2, 2, 25, 100, id="timeout-quarter-to-all"),
    pytest.param([job("x"), job("y", "x")], 2, 2, 120, 120, id="default-60s-each"),
    pytest.param([job("k", s=90, timeout_s=30)], 2, 2, 30, 30, id="expected-capped-at-timeout"),
    pytest.param(
        [job("a", s=30), job("b", timeout_s=40), job("c", "a", "b")],
        2,
        2,
        90,
        100,
        id="mixed-durations",
    ),
]


@pytest.mark.parametrize(("jobs", "n_workers", "worker_cores", "low_s", "high_s"), TIME_CASES)
def test_time_bounds(
    jobs: list[JobSpec], n_workers: int, worker_cores: int, low_s: float, high_s: float
) -> None:
    estimate = local_estimate(jobs, n_workers=n_workers, worker_cores=worker_cores)
    assert (estimate.duration_s_low, estimate.duration_s_high) == (low_s, high_s)
    assert estimate.n_jobs == len(jobs)


COST_CASES = [
    # (jobs, low USD, high USD) at 0.05 USD per core-hour
    pytest.param([job("a", s=3600)], D("0.05"), D("0.05"), id="one-core-hour"),
    pytest.param([job("a", s=36, cpu=4)], D("0.002"), D("0.002"), id="four-cores"),
    pytest.param([job("a", timeout_s=720)], D("0.0025"), D("0.01"), id="timeout-range"),
    pytest.param(
        [job("a"), job("b")], D("0.05") * 120 / 3600, D("0.05") * 120 / 3600, id="default"
    ),
]


@pytest.mark.parametrize(("jobs", "low_usd", "high_usd"), COST_CASES)
def test_cost_bounds(jobs: list[JobSpec], low_usd: Decimal, high_usd: Decimal) -> None:
    estimate = local_estimate(jobs, n_workers=1, worker_cores=4)
    assert (estimate.cost_usd_low, estimate.cost_usd_high) == (low_usd, high_usd)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fixed_durations_cost_within_ten_percent(seed: int) -> None:
    rng = random.Random(seed)
    jobs = []
    for i in range(2000):
        parents = tuple(f"j{rng.randrange(i)}" for _ in range(rng.randrange(3))) if i else ()
        jobs.append(
            job(
                f"j{i}", *dict.fromkeys(parents), s=rng.uniform(1, 600), cpu=rng.choice([0.5, 1, 2])
            )
        )
    true_usd = sum(
        D(j.cores_mcpu) / 1000 * PRICE_PER_CORE_HOUR * D(j.expected_duration_s or 0) / 3600
        for j in jobs
    )
    estimate = local_estimate(jobs, n_workers=4, worker_cores=4)
    for estimated in (estimate.cost_usd_low, estimate.cost_usd_high):
        assert abs(estimated - true_usd) <= true_usd * D("0.10")
    assert estimate.duration_s_low <= estimate.duration_s_high


def test_cloud_estimate_is_quantity_times_rate_times_duration() -> None:
    rates = load_price_table("gcp")
    jobs = [
        JobSpec(
            name=f"j{i}",
            command="true",
            cores_mcpu=2000,
            memory_bytes=8 * GIB,
            storage_bytes=10 * GIB,
            expected_duration_s=600,
        )
        for i in range(10)
    ]
    estimate = estimate_batch(
        jobs,
        worker_cores_mcpu=8000,
        n_workers=2,
        rates=rates,
        quantities_for=quantities_for_pool(
            cloud="gcp", family_or_size="n2", region="europe-west4", worker_cores_mcpu=8000
        ),
    )
    per_hour = (
        2 * rates["compute/n2-spot/europe-west4"]
        + 8 * rates["memory/n2-spot/europe-west4"]
        + 10 * rates["disk/pd-ssd/europe-west4"]
        + 2 * rates["service-fee"]
    )
    true_usd = 10 * per_hour * 600 / 3600
    assert abs(estimate.cost_usd_low - true_usd) <= true_usd * D("1e-20")
    assert estimate.cost_usd_low == estimate.cost_usd_high
    assert (estimate.duration_s_low, estimate.duration_s_high) == (750, 1200)  # 8 slots of 2 cores


def test_assumptions_are_listed() -> None:
    jobs = [job(f"d{i}") for i in range(12)] + [job("t", timeout_s=60), job("e", s=5)]
    estimate = local_estimate(jobs, default_duration_s=30)
    assert "12 jobs have no expected_duration or timeout; assumed 30s each" in estimate.assumptions
    assert any(a.startswith("1 job has only a timeout") for a in estimate.assumptions)
    assert any("idle or booting workers" in a for a in estimate.assumptions)


def test_jobs_too_big_for_a_worker_are_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"1 job\(s\) ask for more cores.*'?huge"):
        local_estimate([job("ok"), job("huge", cpu=4)], worker_cores=2)


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ([job("a", "ghost")], "depends on unknown job 'ghost'"),
        ([job("b", "a"), job("a")], "not in topological order"),
    ],
)
def test_bad_dags_are_refused(jobs: list[JobSpec], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        local_estimate(jobs)


def test_a_pool_needs_workers() -> None:
    with pytest.raises(ValueError, match="needs workers"):
        local_estimate([job("a")], n_workers=0)


def test_format_estimate() -> None:
    jobs = [job(f"j{i}", s=95) for i in range(6)] + [job("t", timeout_s=400)]
    text = format_estimate(local_estimate(jobs, n_workers=4, worker_cores=2, pool="local"))
    assert text.startswith("Expected cost $0.0")
    assert "\u2013" in text
    assert "for 7 jobs on pool local (4 workers \u00d7 2 cores)." in text
    assert "Assumptions: 1 job has only a timeout" in text


def test_format_estimate_of_a_fixed_range_shows_one_value() -> None:
    text = format_estimate(local_estimate([job("a", s=3600)], n_workers=1, worker_cores=1))
    assert text.startswith(
        "Expected cost $0.05 over 1h for 1 job on a pool (1 worker \u00d7 1 core)"
    )


def test_a_hundred_thousand_job_dag_is_estimated_whole() -> None:
    """The forecast takes a 100,000-job DAG (bench/forecast.py times it: target < 2 s)."""
    jobs = big_dag(100_000)
    quantities_for = quantities_for_pool(
        cloud="gcp", family_or_size="n1", region="us-central1", worker_cores_mcpu=16_000
    )
    estimate = estimate_batch(
        jobs,
        worker_cores_mcpu=16_000,
        n_workers=50,
        rates=load_price_table("gcp"),
        quantities_for=quantities_for,
    )
    assert estimate.n_jobs == 100_000
    assert 0 < estimate.duration_s_low <= estimate.duration_s_high


def big_dag(n: int) -> list[JobSpec]:
    """A binary-tree DAG of ``n`` jobs of mixed sizes, some with timeouts or expected times."""
    return [
        JobSpec(
            name=f"j{i}",
            command="true",
            depends_on=(f"j{i // 2}",) if i else (),
            cores_mcpu=(250, 500, 1000, 2000)[i % 4],
            memory_bytes=GIB,
            timeout_s=600 if i % 3 else None,
            expected_duration_s=30 if i % 5 == 0 else None,
        )
        for i in range(n)
    ]


@st.composite
def dags(draw: st.DrawFn) -> list[JobSpec]:
    n = draw(st.integers(0, 30))
    jobs = []
    for i in range(n):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        jobs.append(
            job(
                f"j{i}",
                *(f"j{p}" for p in sorted(parents)),
                s=draw(st.floats(0, 100, allow_nan=False)),
                cpu=draw(st.sampled_from([0.25, 0.5, 1, 2])),
            )
        )
    return jobs


@settings(max_examples=200, deadline=None)
@given(jobs=dags(), n_workers=st.integers(1, 4))
def test_time_bounds_are_ordered(jobs: list[JobSpec], n_workers: int) -> None:
    estimate = local_estimate(jobs, n_workers=n_workers, worker_cores=2)
    total_s = sum(j.expected_duration_s or 0 for j in jobs)
    # Greedy list scheduling never leaves the whole pool idle while a job is ready
    assert estimate.duration_s_low <= estimate.duration_s_high <= total_s + 1e-6
    assert estimate.cost_usd_low == estimate.cost_usd_high
