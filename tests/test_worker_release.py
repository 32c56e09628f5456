"""A worker of another LabBatch release (another protocol version) is refused by name, not used."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app.protocol import PROTOCOL_VERSION
from tests.engine_helpers import engine, until

pytestmark = pytest.mark.timeout(60)

# `python -m app.worker ARGS` as an older release would run it: the same agent, an older protocol
OLD_RELEASE = (
    "import runpy, sys, app.protocol as p; p.PROTOCOL_VERSION = {version}; "
    "sys.argv = sys.argv[2:]; runpy.run_module('app.worker', run_name='__main__', alter_sys=True)"
)


def old_python(tmp_path: Path, version: int) -> str:
    wrapper = tmp_path / "old-release-python"
    code = OLD_RELEASE.format(version=version)
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{code}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


async def test_a_worker_of_another_release_is_refused_and_the_pool_says_why(
    tmp_path: Path,
) -> None:
    older = PROTOCOL_VERSION - 1
    async with engine(f"sqlite:///{tmp_path / 'lb.db'}", start=False) as eng:
        eng.runtime.cloud.python = old_python(tmp_path, older)
        assert await eng.runtime.start()
        batch = await eng.submit("version: 1\nname: one\njobs:\n  - {name: a, command: 'true'}\n")
        fleet = eng.runtime.driver.fleet

        async def refused() -> bool:
            return "local" in fleet.problems

        await until(refused, what="the pool to report the refused worker")
        problem = str(fleet.problems["local"])
        assert f"speaks protocol {older}, this LabBatch {PROTOCOL_VERSION}" in problem
        assert not [i for i in fleet.instances.values() if i.conn is not None]
        assert await eng.job_state(batch, "a") == "Ready"  # never ran on it
