"""A driver with another master key does not take running workers over (it would re-run their
jobs); the driver with the right key does, and accepts what finished meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.batches import frontend
from app.engine.events import EventBus
from app.engine.runtime import LocalRuntime
from app.engine.secrets import KEY_ENV, forget_cached_key
from app.engine.workers.takeover import TakeoverRefusedError
from tests.engine_helpers import engine, until


def use_key(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv(KEY_ENV, key)
    forget_cached_key()


async def test_takeover_with_another_key_is_refused_and_nothing_runs_twice(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks, go = tmp_path / "marks", tmp_path / "go"
    use_key(monkeypatch, "key-of-the-first-driver")
    async with engine(db_url) as first:
        batch_id = await first.submit(
            "version: 1\njobs:\n  - name: once\n    command: |\n"
            f"      echo S$LABBATCH_ATTEMPT_ID >> {marks}\n"
            f"      until [ -e {go} ]; do sleep 0.05; done\n"
        )

        async def running() -> bool:
            return marks.exists()

        await until(running, what="the job to start")
        await first.runtime.driver.hand_over()  # workers keep running, the lease is free

        use_key(monkeypatch, "a-key-of-its-own")
        other = LocalRuntime(first.db, bus=EventBus())
        assert not await other.start()
        assert "another secret key" in (other.driver.problem or "")
        with pytest.raises(TakeoverRefusedError, match=KEY_ENV):
            await other.start(wait_for_lease=True)
        assert await other.lease_holder() is None  # handed back at once
        assert await first.job_state(batch_id, "once") == "Running"
        go.touch()  # the job ends while no driver can hear it

        use_key(monkeypatch, "key-of-the-first-driver")
        right = LocalRuntime(first.db, bus=EventBus())
        assert await right.start()
        try:
            batch = await first.wait(batch_id)
            detail = await frontend.job_detail(first.db, batch_id, "once")
        finally:
            await right.stop()
    assert batch.state == "success"
    assert [a.attempt for a in detail.attempts] == [1]
    assert marks.read_text() == "S1\n"
