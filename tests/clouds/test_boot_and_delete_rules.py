"""The rules of a cloud worker's boot and delete, without a cloud: dial until up, late or
gone; a failed delete kept with its error and tried again with backoff until it succeeds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from app.engine.workers import boots
from app.engine.workers.boots import BootOutcome, dial_until_up, missed_deadline, tail
from app.engine.workers.deletions import Deleter, retry_delay_s
from app.errors import CloudError
from app.models.db import open_database
from app.models.tables import Instance
from tests.engine_helpers import until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def quick_dials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boots, "DIAL_DELAYS_S", (0.01, 0.02))


class Dials:
    """A worker that refuses ``refusals`` dials, then answers."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.calls = 0

    async def connect(self) -> bool:
        self.calls += 1
        return self.calls > self.refusals


async def test_a_booting_worker_is_dialled_until_it_answers() -> None:
    dials = Dials(refusals=5)
    outcome = await dial_until_up(dials.connect, wanted=lambda: True, deadline=time.time() + 10)
    assert (outcome, dials.calls) == (BootOutcome.UP, 6)


async def test_dialling_stops_at_the_deadline_and_when_the_worker_is_retired() -> None:
    started = time.time()
    late = await dial_until_up(Dials(10**6).connect, wanted=lambda: True, deadline=started + 0.3)
    assert late == BootOutcome.LATE and 0.3 <= time.time() - started < 2.0

    dials, wanted = Dials(10**6), [True]

    async def refused_then_retired() -> bool:  # drained after its third refused dial
        answered = await dials.connect()
        wanted[0] = dials.calls < 3
        return answered

    gone = await dial_until_up(
        refused_then_retired, wanted=lambda: wanted[0], deadline=time.time() + 10
    )
    assert gone == BootOutcome.GONE and dials.calls == 3


@pytest.mark.parametrize(("failures", "delay_s"), [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0)])
def test_a_failed_delete_is_tried_again_after_a_growing_delay(
    failures: int, delay_s: float
) -> None:
    assert retry_delay_s(failures) == delay_s


def test_a_missed_deadline_names_the_vm_the_deadline_and_the_console_tail() -> None:
    console = "\n".join(f"line {n}" for n in range(40)) + "\n" + "x" * 500 + "\n\n"
    message = str(missed_deadline("gce-1", 600, tail(console)))
    assert message.startswith("VM gce-1 booted but its worker did not answer within")
    assert "boot deadline of 10m" in message and "--boot-deadline" in message
    assert "  | line 39" in message and "line 28" not in message  # the last 12 lines
    assert "x" * 200 in message and "x" * 201 not in message


class FlakyCloud:
    """Deletes fail with a 503 ``failures`` times, then succeed."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[str, dict[str, Any] | None]] = []

    async def delete_instance(self, name: str, *, handle: dict[str, Any] | None = None) -> None:
        self.calls.append((name, handle))
        if len(self.calls) <= self.failures:
            raise CloudError("Compute Engine is busy or unavailable (503)", transient=True)


async def test_a_delete_is_kept_with_its_error_until_the_cloud_confirms_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.engine.workers.deletions.retry_delay_s", lambda failures: 0.05)
    db = await open_database(f"sqlite:///{tmp_path}/lb.db")
    try:
        await db.run(
            lambda conn: conn.execute(
                insert(Instance).values(
                    name="vm-1",
                    pool="local",
                    state="deleting",
                    cores_mcpu=1000,
                    time_created=time.time(),
                    handle={"zone": "z"},
                    reason="idle for 300s",
                )
            )
        )

        async def row() -> Any:
            return await db.read(
                lambda conn: conn.execute(select(Instance).where(Instance.name == "vm-1")).one()
            )

        cloud = FlakyCloud(failures=2)
        deleted: list[tuple[str, str]] = []
        deleter = Deleter(db, lambda pool: cloud, on_deleted=lambda *a: deleted.append(a))  # type: ignore[arg-type,return-value]
        assert not await deleter.delete("vm-1", "local", {"zone": "z"})
        failed = await row()
        assert failed.state == "deleting" and "503" in failed.delete_error
        assert failed.reason == "idle for 300s"

        async def gone() -> bool:
            await deleter.retry_due()
            return bool(deleted)

        await until(gone, timeout_s=10, what="the delete to succeed")
        done = await row()
        assert (done.state, done.delete_error) == ("deleted", None)
        assert deleted == [("vm-1", "local")] and deleter.pending == {}
        assert cloud.calls == [("vm-1", {"pool": "local", "zone": "z"})] * 3
    finally:
        await db.close()
