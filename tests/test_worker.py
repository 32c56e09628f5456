"""The worker agent, tested as a real process on 127.0.0.1 driven over its WebSocket."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from app.protocol import (
    HEALTH_PATH,
    LOG_PATH,
    PROTOCOL_VERSION,
    REPLACED_CLOSE_CODE,
    TOKEN_ENV,
    WS_PATH,
    Completed,
    Heartbeat,
    JobResult,
    JobStart,
    Outcome,
    Retiring,
    Shutdown,
    Started,
    bearer,
)
from app.worker.budget import FifoCoreBudget
from app.worker.outbox import encode_jobs
from tests.worker_helpers import (
    REPO_ROOT,
    Driver,
    WorkerProcess,
    connect,
    job,
    key_of,
    poll,
    poll_health,
    process_gone,
    read_pids,
    start_worker,
)


def batch_dir(worker: WorkerProcess, batch_id: int = 1) -> Path:
    return worker.work_dir / "batches" / str(batch_id)


# --- authentication, health, hello -------------------------------------------------------


async def test_refuses_missing_and_wrong_token_without_logging_it(worker: WorkerProcess) -> None:
    wrong = "not-the-token-xyz"
    async with aiohttp.ClientSession() as session:
        url = worker.base_url + WS_PATH
        with pytest.raises(aiohttp.WSServerHandshakeError) as no_token:
            await session.ws_connect(url)
        with pytest.raises(aiohttp.WSServerHandshakeError) as bad_token:
            await session.ws_connect(url, headers={"Authorization": bearer(wrong)})
        log_url = worker.base_url + LOG_PATH.format(batch_id=1, job_id=1, attempt=1)
        async with session.get(log_url, headers={"Authorization": bearer(wrong)}) as response:
            log_status = response.status
    assert (no_token.value.status, bad_token.value.status, log_status) == (401, 401, 401)
    await poll(lambda: "refused connection from 127.0.0.1: bad token" in worker.stderr_text())
    stderr = worker.stderr_text()
    assert "refused connection from 127.0.0.1: no token" in stderr
    assert worker.token not in stderr
    assert wrong not in stderr


async def test_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env["PYTHONPATH"] = str(REPO_ROOT)
    argv = [sys.executable, "-m", "app.worker", "--port", "0", "--name", "w", "--cores", "1"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        "--work-dir",
        str(tmp_path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert stdout == b""
    assert TOKEN_ENV.encode() in stderr


async def test_ready_line_and_health(worker: WorkerProcess) -> None:
    url = worker.base_url + HEALTH_PATH
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200
            anonymous = await response.json()
        async with session.get(url, headers={"Authorization": bearer("guess")}) as response:
            guessed = await response.json()
        async with session.get(url, headers={"Authorization": bearer(worker.token)}) as response:
            body = await response.json()
            text = await response.text()
    # name and load only for the driver: they tell an attacker what runs here and when
    assert anonymous == guessed == {"version": PROTOCOL_VERSION}
    assert body == {"name": "test-worker", "version": PROTOCOL_VERSION, "n_running": 0}
    assert worker.token not in text


async def test_sigusr1_writes_every_stack_to_the_log_and_the_worker_runs_on(
    worker: WorkerProcess,
) -> None:
    # what a worker that stopped answering is stuck on, without stopping it
    worker.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while "most recent call first" not in worker.stderr_text():
        assert time.monotonic() < deadline, worker.stderr_text()
        await asyncio.sleep(0.05)
    assert "app/worker" in worker.stderr_text()
    assert worker.proc.returncode is None
    async with (
        aiohttp.ClientSession() as session,
        session.get(worker.base_url + HEALTH_PATH) as response,
    ):
        assert response.status == 200


async def test_hello_on_connect(driver: Driver) -> None:
    hello = driver.hello
    assert (hello.version, hello.instance) == (PROTOCOL_VERSION, "test-worker")
    assert (hello.cores_mcpu, hello.free_mcpu) == (2000, 2000)
    assert (hello.running, hello.finished) == ([], [])


async def test_new_connection_replaces_the_old_one(worker: WorkerProcess, driver: Driver) -> None:
    second = await connect(worker)
    try:
        frame = await driver.ws.receive(timeout=5)
        assert (frame.type, frame.data) == (aiohttp.WSMsgType.CLOSE, REPLACED_CLOSE_CODE)
        assert "replaces the open one" in worker.stderr_text()
        await second.schedule(job(1, "true"))
        assert (await second.result((1, 1, 1))).outcome is Outcome.SUCCESS
    finally:
        await second.close()


# --- running jobs --------------------------------------------------------------------------


async def test_success_and_failure_with_logs(driver: Driver) -> None:
    await driver.schedule(
        job(1, "echo hello; echo to-stderr >&2"),
        job(2, "echo bad; exit 3"),
    )
    results = await driver.results((1, 1, 1), (1, 2, 1))
    ok, bad = results[(1, 1, 1)], results[(1, 2, 1)]
    assert (ok.outcome, ok.exit_code, ok.error) == (Outcome.SUCCESS, 0, None)
    assert ok.log == "hello\nto-stderr\n"
    assert ok.start_time is not None and ok.start_time <= ok.end_time
    assert (bad.outcome, bad.exit_code, bad.log) == (Outcome.FAILED, 3, "bad\n")


async def test_environment_scratch_and_batch_dir(worker: WorkerProcess, driver: Driver) -> None:
    show = (
        'echo "$LABBATCH_BATCH_ID $LABBATCH_JOB_ID $LABBATCH_JOB_NAME $LABBATCH_ATTEMPT_ID"\n'
        'echo "$PWD"; echo "$LABBATCH_SCRATCH"; echo "$LABBATCH_BATCH_DIR"\n'
        'echo "${LABBATCH_WORKER_TOKEN-unset} $MY_VAR $HOME"\n'
        'echo shared > "$LABBATCH_BATCH_DIR/note.txt"'
    )
    await driver.schedule(job(7, show, attempt=2, name="show env", env={"MY_VAR": "v 1"}))
    lines = (await driver.result((1, 7, 2))).log.splitlines()
    scratch = str(worker.work_dir / "scratch" / "1-7-2")
    assert lines[0] == "1 7 show env 2"
    assert lines[1:4] == [scratch, scratch, str(batch_dir(worker))]
    assert lines[4] == f"unset v 1 {os.environ['HOME']}"
    assert worker.token not in "\n".join(lines)
    await poll(lambda: not Path(scratch).exists())

    await driver.schedule(job(8, 'cat "$LABBATCH_BATCH_DIR/note.txt"'))
    assert (await driver.result((1, 8, 1))).log == "shared\n"


async def test_job_cannot_see_the_token(worker: WorkerProcess, driver: Driver) -> None:
    # Neither in its own environment nor in the worker's /proc environ, which it could read.
    command = "env; echo ---; tr '\\0' '\\n' < /proc/$PPID/environ"
    await driver.schedule(job(1, command, env={"MY_VAR": "x"}))
    result = await driver.result((1, 1, 1))
    own_env, worker_env = result.log.split("---\n")
    assert "MY_VAR=x" in own_env
    assert "LABBATCH_WORKER_TOKEN" not in own_env
    assert "PYTHONPATH=" in worker_env
    assert worker.token not in result.log


async def test_command_behaves_exactly_like_bash_c(driver: Driver, tmp_path: Path) -> None:
    command = (
        "printf '%s|' \"it's\" 'say \"hi\"' '$HOME' \"$((6 * 7))\" $'tab\\there'; echo\n"
        'x=\'a  b\'; echo $x "$x" "$0" $LINENO\n'
        "cat <<'EOF'\nliteral $x `no`\nEOF\n"
        'echo "a\\\\b" \\\n  continued; false || echo "status $?"\n'
        "yes | head -n 1; trap -p; echo end"
    )
    bash = await asyncio.create_subprocess_exec(
        "bash", "-c", command, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    expected = (await bash.communicate())[0].decode()
    await driver.schedule(job(1, command))
    result = await driver.result((1, 1, 1))
    assert result.outcome is Outcome.SUCCESS
    assert result.log == expected


async def test_timeout_kills_the_whole_process_group(worker: WorkerProcess, driver: Driver) -> None:
    pids = batch_dir(worker) / "timeout.pids"
    command = f"sleep 30 & echo $! > {pids}.tmp; mv {pids}.tmp {pids}; sleep 30"
    await driver.schedule(job(1, command, timeout_s=0.5))
    result = await driver.result((1, 1, 1))
    assert (result.outcome, result.error) == (Outcome.ERROR, "timed out after 0.5s")
    [child] = read_pids(pids)
    await poll(lambda: process_gone(child))


async def test_job_killed_by_a_signal(driver: Driver) -> None:
    await driver.schedule(job(1, "echo before; kill -9 $$"))
    result = await driver.result((1, 1, 1))
    assert (result.outcome, result.exit_code) == (Outcome.FAILED, 137)
    assert result.error == "killed by signal 9 (out of memory?)"
    assert result.log == "before\n"


async def test_processes_left_behind_by_a_finished_job_are_killed(
    worker: WorkerProcess, driver: Driver
) -> None:
    pids = batch_dir(worker) / "left.pids"
    await driver.schedule(job(1, f"sleep 30 & echo $! > {pids}; exit 0"))
    assert (await driver.result((1, 1, 1))).outcome is Outcome.SUCCESS
    [child] = read_pids(pids)
    await poll(lambda: process_gone(child))


async def test_cancel_kills_the_process_group(worker: WorkerProcess, driver: Driver) -> None:
    pids = batch_dir(worker) / "cancel.pids"
    # The leader ignores SIGTERM, so the worker must follow up with SIGKILL.
    command = f"trap '' TERM; sleep 30 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"
    await driver.schedule(job(1, command))
    await driver.wait_started((1, 1, 1))
    await poll(lambda: len(read_pids(pids)) == 2)
    await driver.cancel((1, 1, 1))
    result = await driver.result((1, 1, 1))
    assert result.outcome is Outcome.CANCELLED
    await poll(lambda: all(process_gone(pid) for pid in read_pids(pids)))


async def test_cancel_of_a_queued_job(driver: Driver) -> None:
    await driver.schedule(job(1, "sleep 30", cores_mcpu=2000), job(2, "true", cores_mcpu=2000))
    await driver.wait_started((1, 1, 1))
    await driver.cancel((1, 2, 1))
    queued = await driver.result((1, 2, 1))
    assert (queued.outcome, queued.start_time) == (Outcome.CANCELLED, None)
    await driver.cancel((1, 1, 1))
    assert (await driver.result((1, 1, 1))).outcome is Outcome.CANCELLED


async def test_each_attempt_gets_an_empty_scratch_dir_and_a_log_of_its_own(
    worker: WorkerProcess, driver: Driver
) -> None:
    # Spent scratch dirs and logs are reused under new names (a rename is cheaper than a new
    # inode); nothing of one attempt may show in the next.
    for round_ in range(3):
        keys = [(1, 10 * round_ + i, 1) for i in range(1, 9)]
        await driver.schedule(
            *(
                job(k[1], f"ls -A; echo {'long line ' * (10 - k[1] % 10)}{k[1]}; touch a{k[1]}")
                for k in keys
            )
        )
        results = await driver.results(*keys)
        for key in keys:
            assert results[key].log == f"{'long line ' * (10 - key[1] % 10)}{key[1]}\n"
        await driver.ack(*keys)
        keys = [(2, 10 * round_ + i, 1) for i in range(1, 9)]
        await driver.schedule(*(job(k[1], f"echo {k[1]}", batch_id=2) for k in keys))
        results = await driver.results(*keys)
        assert [results[k].log for k in keys] == [f"{k[1]}\n" for k in keys]
        await driver.ack(*keys)
    logs = worker.work_dir / "logs"
    await poll(lambda: not any(log.name[0].isdigit() for log in logs.iterdir()))  # all acked
    worker.proc.terminate()
    assert await worker.wait_exit() == 0
    # a stopped worker leaves no scratch dir or log of an acked attempt behind
    assert list((worker.work_dir / "scratch").iterdir()) == []
    assert list(logs.iterdir()) == []


async def test_burst_of_completions_is_coalesced(driver: Driver) -> None:
    runs = [job(i, "true", cores_mcpu=10) for i in range(200)]
    await driver.schedule(*runs)
    results = await driver.results(*(key_of(r) for r in runs))
    assert {r.outcome for r in results.values()} == {Outcome.SUCCESS}
    n_completed_frames = sum(isinstance(f, Completed) for f in driver.frames)
    n_started_frames = sum(isinstance(f, Started) for f in driver.frames)
    assert n_completed_frames <= 50, n_completed_frames
    assert n_started_frames <= 50, n_started_frames


async def test_jobs_that_do_not_fit_wait_their_turn(worker: WorkerProcess, driver: Driver) -> None:
    times = batch_dir(worker)
    command = 'date +%s.%N > "$LABBATCH_BATCH_DIR/$LABBATCH_JOB_ID"; sleep 0.3; date +%s.%N >> '
    command += '"$LABBATCH_BATCH_DIR/$LABBATCH_JOB_ID"'
    runs = [job(i, command, cores_mcpu=1000) for i in range(4)]
    await driver.schedule(*runs)
    await driver.results(*(key_of(r) for r in runs))
    spans = [tuple(map(float, (times / str(i)).read_text().split())) for i in range(4)]
    most_at_once = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert most_at_once == 2
    running: set[tuple[int, int, int]] = set()
    for frame in driver.frames:
        if isinstance(frame, Started):
            running |= {key_of(s) for s in frame.jobs}
        elif isinstance(frame, Completed):
            running -= {key_of(r) for r in frame.jobs}
        assert len(running) <= 2


async def test_image_job_without_a_container_runtime(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to(shutil.which("bash") or "/bin/bash")
    env = {**os.environ, "PATH": str(bin_dir)}
    agent = await start_worker(tmp_path, env=env)
    try:
        driver = await connect(agent)
        await driver.schedule(job(1, "true", image="ubuntu:24.04"))
        result = await driver.result((1, 1, 1))
        await driver.close()
    finally:
        await agent.stop()
    assert result.outcome is Outcome.ERROR
    assert result.error == (
        "image 'ubuntu:24.04' needs docker or podman on the worker, and neither is on PATH"
    )


async def test_image_job_runs_through_the_container_runtime(tmp_path: Path) -> None:
    bin_dir, killed = tmp_path / "bin", tmp_path / "killed"
    bin_dir.mkdir()
    fake_docker = bin_dir / "docker"
    fake_docker.write_text(
        "#!/bin/bash\n"
        f'if [ "$1" = kill ]; then echo "$2" > {killed}; exit 0; fi\n'
        'printf "%s\\n" "$@"\n'
        'case "${*: -1}" in fail125) exit 125;; sleepy) exec sleep 30;; esac\n'
    )
    fake_docker.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    agent = await start_worker(tmp_path, env=env)
    try:
        driver = await connect(agent)
        image = "ubuntu:24.04"
        await driver.schedule(
            job(1, "echo hi", image=image, env={"K": "v"}),
            job(2, "fail125", image=image),
            job(3, "sleepy", image=image),
        )
        await driver.wait_started((1, 3, 1))
        await driver.cancel((1, 3, 1))
        results = await driver.results((1, 1, 1), (1, 2, 1), (1, 3, 1))
        await driver.close()
    finally:
        await agent.stop()
    argv = results[(1, 1, 1)].log.splitlines()
    scratch = agent.work_dir / "scratch" / "1-1-1"
    assert argv[:5] == ["run", "--rm", "--name", "labbatch-1-1-1", "-v"]
    assert f"{scratch}:/scratch" in argv
    assert f"{batch_dir(agent)}:/batch" in argv
    assert {"LABBATCH_SCRATCH=/scratch", "LABBATCH_BATCH_DIR=/batch", "K=v"} <= set(argv)
    assert argv[-4:] == [image, "bash", "-c", "echo hi"]
    assert results[(1, 2, 1)].outcome is Outcome.ERROR
    assert results[(1, 2, 1)].error == (
        "container runtime could not start the job (exit 125); see the log"
    )
    assert results[(1, 3, 1)].outcome is Outcome.CANCELLED
    await poll(lambda: killed.exists() and killed.read_text() == "labbatch-1-3-1\n")


async def test_heartbeats_and_fractional_cores(tmp_path: Path) -> None:
    agent = await start_worker(tmp_path, cores="1.5", extra_args=["--heartbeat-s", "0.1"])
    try:
        driver = await connect(agent)
        await driver.schedule(job(1, "sleep 30", cores_mcpu=500))
        await driver.wait_started((1, 1, 1))
        beat = await driver.wait_for(Heartbeat, lambda b: b.n_running == 1)
        await driver.close()
    finally:
        await agent.stop()
    assert driver.hello.cores_mcpu == 1500
    assert beat.free_mcpu == 1000


# --- reconnection, acks and logs -----------------------------------------------------------


async def test_reconnect_finds_running_then_finished_jobs(worker: WorkerProcess) -> None:
    go = batch_dir(worker) / "go"
    first = await connect(worker)
    await first.schedule(job(1, f"echo waiting; until [ -e {go} ]; do sleep 0.02; done; echo done"))
    await first.wait_started((1, 1, 1))
    await first.close()

    second = await connect(worker)
    assert [key_of(s) for s in second.hello.running] == [(1, 1, 1)]
    assert second.hello.finished == []
    await second.close()

    go.touch()
    await poll_health(worker, lambda health: health["n_running"] == 0)
    third = await connect(worker)
    try:
        assert third.hello.running == []
        [finished] = third.hello.finished
        assert (key_of(finished), finished.outcome) == ((1, 1, 1), Outcome.SUCCESS)
        assert finished.log == "waiting\ndone\n"
    finally:
        await third.close()


async def test_unacked_results_are_in_hello_and_acked_ones_are_forgotten(
    worker: WorkerProcess, driver: Driver
) -> None:
    await driver.schedule(job(1, "echo one"), job(2, "echo two"))
    await driver.results((1, 1, 1), (1, 2, 1))
    log_url = worker.base_url + LOG_PATH.format(batch_id=1, job_id=1, attempt=1)
    auth = {"Authorization": bearer(worker.token)}
    async with aiohttp.ClientSession() as session:
        async with session.get(log_url, headers=auth) as response:
            assert (response.status, await response.text()) == (200, "one\n")
        await driver.ack((1, 1, 1))
        await driver.close()
        again = await connect(worker)
        await again.close()
        async with session.get(log_url, headers=auth) as response:
            assert response.status == 404
    assert [key_of(r) for r in again.hello.finished] == [(1, 2, 1)]
    assert not (worker.work_dir / "logs" / "1-1-1.log").exists()


# --- exit rules ----------------------------------------------------------------------------


async def _start_long_job(worker: WorkerProcess, driver: Driver) -> list[int]:
    pids = batch_dir(worker) / "long.pids"
    command = f"sleep 30 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait"
    await driver.schedule(job(1, command))
    await driver.wait_started((1, 1, 1))
    await poll(lambda: len(read_pids(pids)) == 2)
    return read_pids(pids)


async def test_sigterm_kills_jobs_and_exits_zero(worker: WorkerProcess, driver: Driver) -> None:
    pids = await _start_long_job(worker, driver)
    worker.proc.terminate()
    assert await worker.wait_exit() == 0
    assert all(process_gone(pid) for pid in pids)


async def test_shutdown_message_kills_jobs_and_exits_zero(
    worker: WorkerProcess, driver: Driver
) -> None:
    pids = await _start_long_job(worker, driver)
    await driver.send(Shutdown(reason="test"))
    assert await worker.wait_exit() == 0
    assert all(process_gone(pid) for pid in pids)


async def test_orphaned_worker_kills_jobs_and_exits(tmp_path: Path) -> None:
    agent = await start_worker(tmp_path, extra_args=["--orphan-timeout-s", "1"])
    try:
        driver = await connect(agent)
        pids = await _start_long_job(agent, driver)
        await driver.close()
        assert await agent.wait_exit() == 0
    finally:
        await agent.stop()
    assert all(process_gone(pid) for pid in pids)
    assert "no driver connected for 1s" in agent.stderr_text()


async def test_idle_worker_retires(tmp_path: Path) -> None:
    agent = await start_worker(tmp_path, extra_args=["--idle-timeout-s", "0.5"])
    try:
        driver = await connect(agent)
        await driver.schedule(job(1, "true"))
        await driver.result((1, 1, 1))
        retiring = await driver.wait_for(Retiring)
        assert retiring.idle_s >= 0.5
        frame = await driver.ws.receive(timeout=5)
        assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await driver.close()
        assert await agent.wait_exit() == 0
    finally:
        await agent.stop()


# --- the core budget on its own ------------------------------------------------------------


def test_fast_frame_encoding_matches_the_protocol() -> None:
    results = [
        JobResult(1, 2, 3, Outcome.FAILED, 3, 1.5, 2.25, "boom", "é\x00\n"),
        JobResult(1, 4, 1, Outcome.ERROR, None, None, 3.0),
    ]
    starts = [JobStart(1, 2, 3, 1.5)]
    assert encode_jobs(Completed(jobs=results)) == Completed(jobs=results).to_json()
    assert encode_jobs(Started(jobs=starts)) == Started(jobs=starts).to_json()


def test_core_budget_is_first_in_first_out() -> None:
    budget: FifoCoreBudget[str] = FifoCoreBudget(2000)
    for key, weight_mcpu in [("a", 1500), ("big", 1000), ("small", 100)]:
        budget.enqueue(key, weight_mcpu)
    assert budget.pop_granted() == ["a"]  # "small" would fit but waits behind "big"
    budget.release(1500)
    assert budget.pop_granted() == ["big", "small"]
    assert budget.free_mcpu == 900


def test_core_budget_skips_withdrawn_keys() -> None:
    budget: FifoCoreBudget[str] = FifoCoreBudget(1000)
    budget.enqueue("running", 1000)
    budget.enqueue("withdrawn", 1000)
    budget.enqueue("next", 500)
    assert budget.pop_granted() == ["running"]
    budget.withdraw("withdrawn")
    budget.release(1000)
    assert budget.pop_granted() == ["next"]
