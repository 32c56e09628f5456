"""Secrets stay with the driver: jobs see a minimal environment, the data dir is private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.engine.secrets import forget_cached_key, worker_token
from app.models.db import data_dir, open_database
from tests.engine_helpers import engine


def read_environ(path: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for item in path.read_text().split("\0") if "=" in item)


async def test_jobs_see_none_of_the_drivers_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lb_home: Path
) -> None:
    monkeypatch.setenv("LABBATCH_SECRET_KEY", "the-lab-master-key")
    monkeypatch.setenv("DRIVER_ONLY_SETTING", "driver-private")
    forget_cached_key()
    job_env, worker_env = tmp_path / "job.env", tmp_path / "worker.env"
    async with engine(f"sqlite:///{tmp_path / 'lab.db'}") as eng:
        batch_id = await eng.submit(
            "version: 1\njobs:\n  - name: snoop\n    env: {FROM_SPEC: v1}\n"
            f"    command: env -0 > {job_env}; cat /proc/$PPID/environ > {worker_env}\n"
        )
        assert (await eng.wait(batch_id)).state == "success"
    job = read_environ(job_env)
    worker = read_environ(worker_env)
    assert job["FROM_SPEC"] == "v1"
    assert {"PATH", "HOME", "TMPDIR", "LABBATCH_SCRATCH"} <= job.keys()
    for env in (job, worker):
        assert not {"LABBATCH_SECRET_KEY", "LABBATCH_HOME", "DRIVER_ONLY_SETTING"} & env.keys()
    everything = job_env.read_text() + worker_env.read_text()
    assert "the-lab-master-key" not in everything
    # no path into the data dir either (scratch and batch dirs live beside it)
    assert not [v for v in job.values() if v == str(lb_home) or v.startswith(f"{lb_home}/")]


@pytest.fixture
def loose_home(lb_home: Path) -> Path:
    lb_home.chmod(0o755)  # as an older version left it
    return lb_home


async def test_data_dir_key_and_database_are_private(loose_home: Path) -> None:
    db = await open_database(None)
    await db.close()
    worker_token("w1")  # creates the master key
    assert stat.S_IMODE(data_dir().stat().st_mode) == 0o700
    for name in ("secret.key", "labbatch.db"):
        assert stat.S_IMODE((loose_home / name).stat().st_mode) == 0o600, name
