"""How responsive the desktop stays while jobs flow, and how fast a huge batch opens.

Runs the real app offscreen (main window, engine, a local pool) on a throwaway data dir:
1. feeds no-op jobs (`true`, cpu 0.25) at ``--rate`` jobs/s for ``--seconds`` while a probe
   measures the event loop's lag (how late a 10 ms timer fires); prints p50/p99/max and the
   jobs/s that actually completed (targets: p99 ≤ 50 ms at 500 jobs/s);
2. stores a ``--big``-job batch (kept Pending behind a sleeping job) and times opening it in
   the batch view until its job table shows the row count and the first page (target ≤ 1 s).

    python bench/gui_responsiveness.py [--rate 500] [--seconds 20] [--big 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")
os.environ["LABBATCH_HOME"] = tempfile.mkdtemp(prefix="labbatch-bench-gui-")

from PySide6.QtCore import QSettings

from app.engine.service import EngineService
from app.models.spec import BatchSpec, JobSpec
from app.views.app import Desktop, QtLoop, make_application
from app.views.main_window import MainWindow
from app.views.settings import DesktopSettings

PROBE_S = 0.010
FEED_EVERY_S = 0.2
JOB_MCPU = 250


def noop_batch(n: int, tag: str) -> BatchSpec:
    jobs = tuple(JobSpec(name=f"noop-{i}", command="true", cores_mcpu=JOB_MCPU) for i in range(n))
    return BatchSpec(name=f"flow-{tag}", jobs=jobs)


def big_pending_batch(n: int) -> BatchSpec:
    blocker = JobSpec(name="blocker", command="sleep 600", cores_mcpu=JOB_MCPU)
    jobs = tuple(
        JobSpec(name=f"job-{i}", command="true", cores_mcpu=JOB_MCPU, depends_on=("blocker",))
        for i in range(n - 1)
    )
    return BatchSpec(name=f"big-{n}", jobs=(blocker, *jobs))


async def probe_lag(lags_ms: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(PROBE_S)
        lags_ms.append(max(0.0, (loop.time() - start - PROBE_S) * 1000))


async def feed(service: EngineService, rate: int, seconds: float) -> tuple[int, list[int]]:
    per_tick = max(1, round(rate * FEED_EVERY_S))
    batch_ids = []
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        batch_ids.append(await service.submit(noop_batch(per_tick, str(tick))))
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * FEED_EVERY_S - time.monotonic()))
    return per_tick * len(batch_ids), batch_ids


async def completed(service: EngineService, batch_ids: list[int]) -> int:
    total = 0
    for batch_id in batch_ids:
        total += (await service.batch(batch_id)).batch.n_completed
    return total


async def poll(check: Callable[[], bool]) -> None:
    """Until ``check()`` holds, looking every 2 ms (what the timings resolve)."""
    while not check():  # noqa: ASYNC110 (a Qt model has no event to await)
        await asyncio.sleep(0.002)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def flow(window: MainWindow, service: EngineService, rate: int, seconds: float) -> None:
    # the dashboard is the busiest view; keep it on screen while jobs flow
    window.tabs.setCurrentIndex(2)
    lags: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.ensure_future(probe_lag(lags, stop))
    started = time.monotonic()
    n_submitted, batch_ids = await feed(service, rate, seconds)
    elapsed = time.monotonic() - started
    n_done = await completed(service, batch_ids)
    stop.set()
    await probe
    print(
        f"flow: asked {rate} jobs/s for {seconds:.0f} s; submitted {n_submitted:,}, "
        f"completed {n_done:,} ({n_done / elapsed:,.0f} jobs/s)"
    )
    print(
        f"event-loop lag over {len(lags):,} probes: p50 {statistics.median(lags):.1f} ms, "
        f"p99 {percentile(lags, 0.99):.1f} ms, max {max(lags):.1f} ms (target p99 <= 50 ms)"
    )
    await service.set_pool("local", max_live_instances=0, min_instances=0)  # let it drain


async def open_big(window: MainWindow, service: EngineService, n: int) -> None:
    t = time.perf_counter()
    batch_id = await service.submit(big_pending_batch(n))
    print(f"stored a {n:,}-job batch in {time.perf_counter() - t:.1f} s")
    window.tabs.setCurrentIndex(0)
    model = window.batch_view.table.model()
    start = time.perf_counter()
    window.open_batch(batch_id)
    await poll(lambda: model.rowCount() == n and window.batch_view.model.n_loaded_rows > 0)
    opened_s = time.perf_counter() - start
    print(
        f"opened the {n:,}-job batch in {opened_s * 1000:.0f} ms (target <= 1000 ms); "
        f"{window.batch_view.model.n_loaded_rows:,} rows loaded"
    )
    table = window.batch_view.table
    start = time.perf_counter()
    table.scrollToBottom()
    await poll(lambda: window.batch_view.model.job_at(n - 1) is not None)
    print(f"scrolled to the last job in {(time.perf_counter() - start) * 1000:.0f} ms")
    await service.cancel_batch(batch_id)


async def main(args: argparse.Namespace) -> None:
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, os.environ["LABBATCH_HOME"]
    )
    desktop = Desktop(DesktopSettings())
    window = await desktop.open(None, "bench")
    service = desktop.service
    assert service is not None
    pools = await service.pools()
    while not any(row.instances for row in pools):
        pools = await service.pools()
    if args.seconds > 0:
        await flow(window, service, args.rate, args.seconds)
    if args.big > 0:
        await open_big(window, service, args.big)
    window.close()
    await desktop.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500, help="jobs per second to feed")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--big", type=int, default=100_000, help="jobs in the batch to open")
    args = parser.parse_args()
    app = make_application()
    loop = QtLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(main(args))
