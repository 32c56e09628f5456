"""What the worker cache saves on a cloud pool: N jobs read one input from a bucket on 2 fake
GCE VMs against the GCS emulator, with the cache and without it, in the same run.

Each VM is a fake Compute Engine VM (tests/clouds) whose start-up script runs the real worker;
the driver signs a URL per attempt and the workers download through it. The issue's full size
is `--jobs 100 --input-mb 200` (about 40 GB moved without the cache); the default is small.

    python bench/cloud_files.py [--jobs 20] [--input-mb 20] [--vms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engine.batches import frontend
from app.engine.events import EventBus
from app.engine.runtime import LocalRuntime
from app.engine.workers import pools
from app.engine.workers.pools import PoolConfig
from app.models.db import Database, open_database
from app.models.spec import parse_dag_text
from app.models.tables import Attempt
from app.worker.config import CACHE_SHARE_ENV
from tests.clouds.fake_gce import FakeGce, serving


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pipeline(bucket: str, n_jobs: int, n_vms: int) -> str:
    jobs = "\n".join(
        f"  - {{name: j{i}, pool: gce-{i % n_vms}, inputs: [data], "
        "command: 'cat \"$data\" > /dev/null'}"
        for i in range(n_jobs)
    )
    head = f"version: 1\nname: cloud-files\ninputs: {{data: gs://{bucket}/input.bin}}\n"
    return f"{head}defaults: {{cpu: 1}}\njobs:\n{jobs}\n"


def gce_pool(endpoint: str, storage: str, bucket: str, n: int) -> PoolConfig:
    """One pool per VM: fake VMs all listen on 127.0.0.1, so each needs its pool's own port."""
    return PoolConfig(
        name=f"gce-{n}",
        cloud="gcp",
        machine_type="e2-standard-2",
        worker_cores_mcpu=2000,
        max_instances=1,
        max_live_instances=1,
        scratch=f"gs://{bucket}/scratch",
        config={
            "project": "bench",
            "zones": ["us-central1-a"],
            "allow_from": ["127.0.0.1/32"],
            "worker_port": free_port(),
            "api_endpoint": endpoint,
            "storage": {"endpoint": storage},
        },
    )


async def staging_totals(db: Database, batch_id: int) -> dict[str, float]:
    async with db.connect() as conn:
        rows = await conn.execute(select(Attempt.staging).where(Attempt.batch_id == batch_id))
        totals: dict[str, float] = {}
        for (staging,) in rows:
            for key, value in (staging or {}).items():
                totals[key] = totals.get(key, 0) + value
    return totals


async def one_round(work: Path, storage: str, bucket: str, args: argparse.Namespace) -> str:
    """Run the batch on fresh VMs; returns the result line."""
    os.environ["LABBATCH_HOME"] = str(work / "home")
    db = await open_database(f"sqlite:///{work}/bench.db")
    runtime = LocalRuntime(db, bus=EventBus(), n_workers=0)
    gce = FakeGce(boot_dir=work / "vms")
    try:
        async with serving(gce) as endpoint:
            await runtime.start()
            for n in range(args.vms):
                await pools.create_pool(db, gce_pool(endpoint, storage, bucket, n))
            spec = parse_dag_text(pipeline(bucket, args.jobs, args.vms), source="bench.yaml")
            start = time.perf_counter()
            batch_id = await frontend.submit_batch(db, spec, user="bench")
            runtime.notify_changed()
            while not (batch := await frontend.get_batch(db, batch_id)).complete:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - start
            assert batch.state == "success", await frontend.list_jobs(db, batch_id)
            totals = await staging_totals(db, batch_id)
            await runtime.stop()
    finally:
        await db.close()
    downloaded = totals.get("in_bytes", 0) - totals.get("cache_bytes_saved", 0)
    return (
        f"downloaded {downloaded / 1e6:,.0f} MB "
        f"({downloaded / (args.input_mb << 20):.1f} x the input), "
        f"cache hits {int(totals.get('cache_hits', 0))}, {elapsed:.1f} s "
        "(from submit, VM boot included)"
    )


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    """gcp-storage-emulator on ``port``, once it listens."""
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    emulator = subprocess.Popen(
        [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return emulator
        except OSError:
            if time.monotonic() > deadline:
                emulator.kill()
                raise
            time.sleep(0.05)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--input-mb", type=int, default=20)
    parser.add_argument("--vms", type=int, default=2)
    parser.add_argument("--dir", help="where to work (default: a temporary directory)")
    args = parser.parse_args()
    port = free_port()
    emulator = await asyncio.to_thread(start_emulator, port)
    storage = f"http://127.0.0.1:{port}"
    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs  # type: ignore[attr-defined,unused-ignore]

        client = gcs.Client(
            project="bench",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": storage},
        )
        bucket = client.create_bucket("bench-data")
        with tempfile.TemporaryDirectory(prefix="labbatch-cloud-", dir=args.dir) as tmp:
            source = Path(tmp) / "input.bin"
            with source.open("wb") as f:
                block = os.urandom(1 << 20)
                for _ in range(args.input_mb):
                    f.write(block)
            bucket.blob("input.bin").upload_from_filename(str(source))
            print(f"{args.jobs} jobs read one {args.input_mb} MB input on {args.vms} fake VMs")
            for label, share in (("with the cache", "0.25"), ("without the cache", "0")):
                os.environ[CACHE_SHARE_ENV] = share
                work = Path(tmp) / label.replace(" ", "-")
                work.mkdir()
                print(f"  {label}: {await one_round(work, storage, bucket.name, args)}")
    finally:
        emulator.terminate()
        emulator.wait()


if __name__ == "__main__":
    asyncio.run(main())
