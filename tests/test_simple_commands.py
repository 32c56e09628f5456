"""A simple command is exec'd without bash: to the user it behaves exactly as `bash -c`."""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import pytest

from app.protocol import JobResult, Outcome
from app.worker.simple import simple_words
from app.worker.spawn import spawn_in
from tests.worker_helpers import Driver, WorkerProcess, job


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("true", ["true"]),
        ("  sleep\t0.1 ", ["sleep", "0.1"]),
        ("dd if=a of=b bs=1M", ["dd", "if=a", "of=b", "bs=1M"]),
        ("/usr/bin/env", ["/usr/bin/env"]),
        (
            "./run.sh -v --x=1,2 a:b @c 50% +d",
            ["./run.sh", "-v", "--x=1,2", "a:b", "@c", "50%", "+d"],
        ),
        ("true --help", None),  # bash's builtin ignores it, the program prints its help
        ("echo hi", None),
        ("cd /tmp", None),
        ("time sleep 1", None),
        ("A=1 env", None),
        ("true;", None),
        ("echo $HOME", None),
        ("ls *.txt", None),
        ("ls ~", None),
        ("cat <in", None),
        ("a | b", None),
        ("say 'hi'", None),
        ("a\\ b", None),
        ("true\ntrue", None),
        ("true # comment", None),
        ("ls {a,b}", None),
        ("", None),
        ("   ", None),
    ],
)
def test_which_commands_are_simple(command: str, words: list[str] | None) -> None:
    assert simple_words(command) == words


_job_ids = itertools.count(1)


async def run_both(driver: Driver, command: str, **fields: object) -> tuple[JobResult, JobResult]:
    """The command as it is (simple: exec'd), then with a `;` that makes bash run it."""
    assert simple_words(command) is not None
    assert simple_words(f"{command};") is None
    first, second = next(_job_ids), next(_job_ids)
    await driver.schedule(job(first, command, name="same", **fields))
    await driver.schedule(job(second, f"{command};", name="same", **fields))
    results = await driver.results((1, first, 1), (1, second, 1))
    return results[(1, first, 1)], results[(1, second, 1)]


def user_view(result: JobResult) -> tuple[object, ...]:
    # the scratch dir and LABBATCH_JOB_ID are the only things that differ between the jobs
    log = result.log.replace(f"/1-{result.job_id}-1", "/SCRATCH")
    log = "\n".join(sorted(line for line in log.splitlines() if "LABBATCH_JOB_ID=" not in line))
    return (result.outcome, result.exit_code, result.error, log)


def script(tmp_path: Path, name: str, text: str, *, mode: int = 0o755) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


async def test_environment_and_directory_are_those_of_bash(driver: Driver) -> None:
    simple, shell = await run_both(driver, "env", env={"MY_VAR": "x"})
    assert "MY_VAR=x" in simple.log and "SHLVL=0" in simple.log
    assert "PWD=" in simple.log and "LABBATCH_SCRATCH=" in simple.log
    assert user_view(simple) == user_view(shell)
    simple, shell = await run_both(driver, "/bin/pwd")
    assert simple.log.endswith(f"/scratch/1-{simple.job_id}-1\n")
    assert user_view(simple) == user_view(shell)


@pytest.mark.parametrize(
    ("command", "outcome", "exit_code", "in_log"),
    [
        ("false", Outcome.FAILED, 1, None),
        ("no-such-command-xyz arg", Outcome.FAILED, 127, "command not found"),
        ("./no-such-file", Outcome.FAILED, 127, "No such file or directory"),
        ("ls /no-such-dir-xyz", Outcome.FAILED, 2, "No such file or directory"),
    ],
)
async def test_exit_codes_and_messages_are_those_of_bash(
    driver: Driver, command: str, outcome: Outcome, exit_code: int, in_log: str | None
) -> None:
    simple, shell = await run_both(driver, command)
    assert (simple.outcome, simple.exit_code) == (outcome, exit_code)
    if in_log is not None:
        assert in_log in simple.log
    assert user_view(simple) == user_view(shell)


async def test_programs_and_scripts_run_as_bash_runs_them(driver: Driver, tmp_path: Path) -> None:
    cases = [
        (
            script(tmp_path, "exit7.sh", "#!/bin/sh\necho out; echo err >&2; exit 7\n"),
            7,
            "out\nerr",
        ),
        # no #!: the kernel refuses it and bash runs it as a bash script
        (
            script(tmp_path, "bare.sh", "echo from bash ${BASH_VERSION:+yes}\nexit 3\n"),
            3,
            "bash yes",
        ),
        (script(tmp_path, "plain.txt", "echo never\n", mode=0o644), 126, "Permission denied"),
    ]
    for path, exit_code, in_log in cases:
        simple, shell = await run_both(driver, f"{path} a b")
        assert (simple.exit_code, in_log in simple.log) == (exit_code, True), simple.log
        assert user_view(simple) == user_view(shell)


async def test_timeout_ends_a_simple_command(driver: Driver) -> None:
    simple, shell = await run_both(driver, "sleep 30", timeout_s=0.3)
    assert (simple.outcome, simple.error) == (Outcome.ERROR, "timed out after 0.3s")
    assert user_view(simple)[:3] == user_view(shell)[:3]


async def test_a_job_env_bash_reads_at_start_up_goes_to_bash(
    driver: Driver, tmp_path: Path
) -> None:
    startup = script(tmp_path, "startup.sh", "echo sourced first\n", mode=0o644)
    await driver.schedule(job(1, "true", env={"BASH_ENV": str(startup)}))
    result = await driver.result((1, 1, 1))
    assert (result.outcome, result.log) == (Outcome.SUCCESS, "sourced first\n")


async def test_a_program_on_the_job_path_is_found(driver: Driver, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script(bin_dir, "hello-prog", '#!/bin/sh\necho hello from "$0"\n')
    path = f"{bin_dir}:{os.environ['PATH']}"
    simple, shell = await run_both(driver, "hello-prog", env={"PATH": path})
    assert simple.log == f"hello from {bin_dir}/hello-prog\n"
    assert user_view(simple) == user_view(shell)


async def test_a_relative_path_is_relative_to_the_scratch_dir(
    worker: WorkerProcess, driver: Driver
) -> None:
    batch_dir = worker.work_dir / "batches" / "1"
    batch_dir.mkdir(parents=True, exist_ok=True)
    script(batch_dir, "where.sh", '#!/bin/sh\necho "$0 in $PWD"\n')
    simple, shell = await run_both(driver, "../../batches/1/where.sh")
    scratch = worker.work_dir / "scratch" / f"1-{simple.job_id}-1"
    assert simple.log == f"../../batches/1/where.sh in {scratch}\n"
    assert user_view(simple) == user_view(shell)


async def test_a_simple_command_leads_its_own_session_with_default_signals(
    driver: Driver,
) -> None:
    simple, shell = await run_both(driver, "cat /proc/self/status")
    for result in (simple, shell):
        status = dict(line.split(":\t", 1) for line in result.log.splitlines() if ":\t" in line)
        assert status["Pid"] == status["NSpgid"] == status["NSsid"]  # a session of its own
        ignored = int(status["SigIgn"], 16)
        assert not ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1))
        assert int(status["SigBlk"], 16) == 0
    simple, shell = await run_both(driver, "readlink /proc/self/fd/0 /proc/self/fd/2")
    for result in (simple, shell):  # stdin /dev/null, stderr (as stdout) the attempt's log
        assert result.log.startswith("/dev/null\n")
        assert result.log.endswith(f"/logs/1-{result.job_id}-1.log\n")


def test_a_program_that_cannot_start_raises_os_error_naming_what_is_missing(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "job.log")
    with pytest.raises(FileNotFoundError) as missing_program:
        spawn_in("/no/such/program", ["program"], {}, cwd=str(tmp_path), log_path=log)
    assert missing_program.value.filename == "/no/such/program"
    gone = str(tmp_path / "gone")
    with pytest.raises(FileNotFoundError) as missing_dir:
        spawn_in("/bin/true", ["true"], {}, cwd=gone, log_path=log)
    assert missing_dir.value.filename == gone
    with pytest.raises(ValueError, match="illegal environment variable name"):
        spawn_in("/bin/true", ["true"], {"A=B": "1"}, cwd=str(tmp_path), log_path=log)
