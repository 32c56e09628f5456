"""How long the cost forecast of a 100,000-job DAG takes (target: < 2 s on this machine)."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.engine.billing.forecast import estimate_batch, quantities_for_pool
from app.engine.billing.rates import load_price_table
from tests.test_forecast import big_dag


def main() -> None:
    jobs = big_dag(100_000)
    quantities_for = quantities_for_pool(
        cloud="gcp", family_or_size="n1", region="us-central1", worker_cores_mcpu=16_000
    )
    rates = load_price_table("gcp")
    times_s = []
    for _ in range(5):
        started = time.perf_counter()
        estimate_batch(
            jobs, worker_cores_mcpu=16_000, n_workers=50, rates=rates, quantities_for=quantities_for
        )
        times_s.append(time.perf_counter() - started)
    print(
        f"forecast of 100,000 jobs: median {statistics.median(times_s):.2f} s, "
        f"min {min(times_s):.2f} s, max {max(times_s):.2f} s (target < 2 s)"
    )


if __name__ == "__main__":
    main()
