"""Start the agent: read the token, listen, say READY, run until told to stop."""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import os
import shutil
import signal
import ssl
import sys

from aiohttp import web

from app.worker.agent import WorkerAgent
from app.worker.config import MissingTokenError, WorkerConfig, parse_args, take_token
from app.worker.leftovers import kill_leftovers
from app.worker.server import build_app

log = logging.getLogger("labbatch.worker")

READY_LINE = "LABBATCH-WORKER READY port={port}"
SPARE_FLAG = "--spare"  # first: wait on stdin for the options and token (see wait_to_be_taken)


def main(argv: list[str] | None = None) -> int:
    """Run the agent; the exit code is 0 after any orderly stop, 2 on bad setup."""
    argv = sys.argv[1:] if argv is None else argv
    given_token = None
    if argv[:1] == [SPARE_FLAG]:  # `--spare WORK_ROOT`: the root only shows whose it is
        taken = wait_to_be_taken()
        if taken is None:
            return 0  # the driver that started this spare went without needing it
        argv, given_token = taken
    config = parse_args(argv)
    try:
        # before anything starts that could inherit it
        token = given_token or take_token(config.token_file)
    except MissingTokenError as exc:
        print(f"labbatch worker: {exc}", file=sys.stderr)
        return 2
    try:
        ssl_context = _ssl_context(config)
    except (OSError, ssl.SSLError) as exc:
        print(f"labbatch worker: cannot load the TLS certificate and key: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # `kill -USR1 PID` writes every thread's stack to the worker's log: what a worker that
    # stopped answering is stuck on, without stopping it
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    bash_path = shutil.which("bash")
    if bash_path is None:
        print("labbatch worker: bash is not on PATH; jobs run with bash", file=sys.stderr)
        return 2
    for directory in (config.scratch_dir, config.logs_dir, config.batches_dir):
        directory.mkdir(parents=True, exist_ok=True)
    if not _sweep(config):
        return 1
    try:
        asyncio.run(_serve(config, token, bash_path=bash_path, ssl_context=ssl_context))
    except OSError as exc:
        log.error("could not listen on %s:%s: %s", config.host, config.port, exc)
        return 1
    return 0


def wait_to_be_taken() -> tuple[list[str], str] | None:
    """A spare agent: loaded, it waits for one line on stdin, ``{"argv": [...], "token": T}``.

    `labbatch run` starts a spare first thing, so that the agent's own start-up (Python and
    aiohttp) overlaps the command's; the driver hands it its options and token once it wants a
    worker. The token comes through the pipe, never the environment. End of input: not needed.
    """
    line = sys.stdin.buffer.readline()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, sys.stdin.fileno())  # as an agent started directly has it
    os.close(devnull)
    if not line.strip():
        return None
    start = json.loads(line)
    return [str(arg) for arg in start["argv"]], str(start["token"])


def _sweep(config: WorkerConfig) -> bool:
    """Kill the jobs an earlier worker of this work dir left running; False if some live on."""
    try:
        found = kill_leftovers(config.scratch_dir)
    except TimeoutError as exc:
        log.error("refusing to start: %s", exc)
        return False
    if found:
        log.warning("killed %d job process(es) an earlier worker left behind", len(found))
    return True


def _ssl_context(config: WorkerConfig) -> ssl.SSLContext | None:
    """The server side of TLS when the driver gave this worker a certificate (cloud VMs)."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


async def _serve(
    config: WorkerConfig, token: str, *, bash_path: str, ssl_context: ssl.SSLContext | None
) -> None:
    agent = WorkerAgent(config, bash_path=bash_path)
    runner = web.AppRunner(build_app(agent, token), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, agent.request_stop, f"got {signum.name}")
        agent.start()
        log.info(
            "worker %s listening on %s:%s%s",
            config.name,
            config.host,
            port,
            " with TLS" if ssl_context else "",
        )
        print(READY_LINE.format(port=port), flush=True)
        await agent.run_until_stopped()
    finally:
        await runner.cleanup()
