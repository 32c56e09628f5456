"""Command-line settings and the secret token of one worker agent."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from app.protocol import TOKEN_ENV

# the default of --cache-share (VMs whose start-up script passes no flags: benchmarks, small disks)
CACHE_SHARE_ENV = "LABBATCH_WORKER_CACHE_SHARE"


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How one agent listens, names itself and sizes its job slots."""

    port: int
    host: str
    name: str
    cores_mcpu: int
    work_dir: Path
    heartbeat_s: float
    idle_timeout_s: float | None
    orphan_timeout_s: float
    token_file: Path | None = None
    tls_cert: Path | None = None  # with tls_key: serve https/wss (cloud workers)
    tls_key: Path | None = None
    cache_share: float = 0.25  # share of the disk the input cache may fill; 0: no cache

    @property
    def cache_dir(self) -> Path:
        return self.work_dir / "cache"

    @property
    def scratch_dir(self) -> Path:
        return self.work_dir / "scratch"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def batches_dir(self) -> Path:
        return self.work_dir / "batches"


class MissingTokenError(RuntimeError):
    """The agent was started without its secret in the environment."""


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.worker",
        description=f"LabBatch worker agent; the secret token is read from ${TOKEN_ENV}.",
    )
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", required=True, help="instance name sent in hello")
    parser.add_argument("--cores", type=_positive, required=True, help="cores to offer (float)")
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--heartbeat-s", type=_positive, default=2.0)
    parser.add_argument("--idle-timeout-s", type=_positive, default=None)
    parser.add_argument("--orphan-timeout-s", type=_positive, default=60.0)
    parser.add_argument(
        "--token-file", type=Path, help=f"read the token from this file instead of ${TOKEN_ENV}"
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: serve TLS (with --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--cache-share",
        type=float,
        default=float(os.environ.get(CACHE_SHARE_ENV) or 0.25),
        help="share of the disk the cache of downloaded inputs may fill (0: no cache; "
        f"default ${CACHE_SHARE_ENV} or 0.25)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> WorkerConfig:
    """Parse the command line into a WorkerConfig (argparse exits 2 on bad flags)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return WorkerConfig(
        port=args.port,
        host=args.host,
        name=args.name,
        cores_mcpu=round(args.cores * 1000),
        work_dir=args.work_dir.resolve(),
        heartbeat_s=args.heartbeat_s,
        idle_timeout_s=args.idle_timeout_s,
        orphan_timeout_s=args.orphan_timeout_s,
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        cache_share=min(max(args.cache_share, 0.0), 0.9),
    )


def take_token(token_file: Path | None = None) -> str:
    """Remove the token from the environment (so jobs never inherit it) and return it, or
    read it from ``token_file`` (cloud VMs: a root-only file the start-up script wrote)."""
    _scrub_initial_environ(TOKEN_ENV)
    token = os.environ.pop(TOKEN_ENV, "")
    if not token and token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise MissingTokenError(f"cannot read the token file {token_file}: {exc}") from exc
    if not token:
        raise MissingTokenError(
            f"the worker needs its secret token in ${TOKEN_ENV}; refusing to start without it"
        )
    return token


def _scrub_initial_environ(name: str) -> None:
    """Zero the variable's value where the kernel placed it at exec.

    unsetenv only drops the pointer; /proc/<pid>/environ keeps showing the original bytes to
    any process of the same user, a job included.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_void_p
        address = libc.getenv(name.encode())
        if address:
            ctypes.memset(address, 0, len(ctypes.string_at(address)))
    except (ImportError, OSError, AttributeError):
        pass  # best effort: Python's copy in os.environ is what jobs would inherit
