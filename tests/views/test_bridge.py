"""The bridge: engine events arrive as Qt signals; engine calls deliver results and errors."""

from __future__ import annotations

from app.engine.browse import BatchFilter
from app.engine.events import MetricsSampled
from app.views.bridge import EngineBridge
from tests.views.conftest import EXAMPLES, until


async def test_metrics_arrive_as_signals_and_calls_deliver_results(bridge: EngineBridge) -> None:
    samples: list[object] = []
    bridge.metrics_sampled.connect(samples.append)
    await until(lambda: len(samples) >= 2, what="two metrics samples")

    spec = await bridge.service.load_dag(EXAMPLES / "diamond.yaml")
    finished: list[object] = []
    bridge.batch_finished.connect(finished.append)
    batch_ids: list[int] = []
    bridge.call(bridge.service.submit(spec), batch_ids.append)
    await until(lambda: finished, what="the batch to finish")
    assert batch_ids and finished[0].batch_id == batch_ids[0]  # type: ignore[attr-defined]
    assert not isinstance(samples[0], MetricsSampled)  # the signal carries the sample itself

    rows: list[object] = []
    bridge.call(bridge.service.find_batches(BatchFilter(user="tester")), rows.append)
    await until(lambda: rows, what="the batch list")


async def test_a_user_error_becomes_a_message(bridge: EngineBridge) -> None:
    messages: list[str] = []
    bridge.user_error.connect(messages.append)
    bridge.call(bridge.service.cancel_batch(999))
    await until(lambda: messages, what="the error message")
    assert "no batch 999" in messages[0]
