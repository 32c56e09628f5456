"""The worker cache figures of the dashboard, from plain data (no database, no Qt)."""

from __future__ import annotations

from app.engine.worker_caches import WorkerCache, worker_caches


def test_figures_by_pool_and_worker() -> None:
    workers = [("gce", "vm-2"), ("gce", "vm-1"), ("local", "w-1")]
    held = {"vm-1": {"gs://b/ref.fa": 200, "gs://b/x": 5}, "gone": {"gs://b/y": 1}}
    staging = [
        ("vm-1", {"cache_hits": 1, "cache_bytes_saved": 200}),
        ("vm-1", {"cache_hits": 2, "cache_bytes_saved": 205}),
        ("vm-2", {"in_bytes": 200}),  # downloaded: no hit
        ("w-1", {"linked_bytes": 10}),
    ]
    assert worker_caches(workers, held, staging) == [
        WorkerCache("gce", "vm-1", 205, 2, 3, 405),
        WorkerCache("gce", "vm-2", 0, 0, 0, 0),
        WorkerCache("local", "w-1", 0, 0, 0, 0),
    ]


def test_what_a_cache_holds_is_unknown_where_another_process_drives() -> None:
    rows = worker_caches([("gce", "vm-1")], None, [("vm-1", {"cache_hits": 1})])
    assert rows == [WorkerCache("gce", "vm-1", None, None, 1, 0)]


def test_the_job_detail_line_says_how_much_the_cache_saved() -> None:
    from app.engine.batches.files import staging_text

    line = staging_text({"in_bytes": 4e8, "in_s": 0.5, "cache_hits": 2, "cache_bytes_saved": 4e8})
    assert line == "files in 400 MB 0.50s, out 0 B 0.00s (2 from cache, 400 MB saved)"
