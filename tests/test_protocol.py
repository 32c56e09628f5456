"""Every wire message survives encode -> decode unchanged; bad frames are refused."""

from __future__ import annotations

import pytest

from app.protocol import (
    Ack,
    AttemptRef,
    Cancel,
    Completed,
    FileTransfer,
    Heartbeat,
    Hello,
    JobResult,
    JobRun,
    JobStart,
    Outcome,
    ProtocolError,
    Retiring,
    Schedule,
    Shutdown,
    Started,
    decode,
)

RUN = JobRun(
    batch_id=1,
    job_id=2,
    attempt=3,
    name="align-sample_7",
    command="echo 'it''s' \"$X\"\nexit 3",
    cores_mcpu=250,
    env={"X": "ünïcode", "EMPTY": ""},
    timeout_s=1.5,
    image="ubuntu:24.04",
    memory_bytes=1 << 30,
    batch_dir="/tmp/b/1",
)
START = JobStart(1, 2, 3, 1700000000.25)
RESULT = JobResult(1, 2, 3, Outcome.FAILED, 3, 1700000000.25, 1700000001.5, "exit 3", "log\n")

MESSAGES = [
    Hello(
        version=1,
        instance="w-1",
        cores_mcpu=2000,
        free_mcpu=750,
        running=[START],
        finished=[RESULT],
    ),
    Schedule(jobs=[RUN, JobRun(1, 3, 1, "b", "true", 1000)]),
    Schedule(
        jobs=[
            JobRun(
                1,
                4,
                1,
                "files",
                "true",
                1000,
                inputs=(FileTransfer("in/r.fa", "https://s/b/r.fa?sig", "r", 4, "b#1", "md5"),),
                outputs=(
                    FileTransfer(
                        "out/x",
                        "https://s/b/x?put",
                        "x",
                        kind="gcs",
                        resumable_url="https://s/b/x?post",
                    ),
                ),
                paths={"r": "in/r.fa", "x": "out/x"},
            )
        ]
    ),
    Cancel(attempts=[AttemptRef(1, 2, 3)]),
    Ack(attempts=[AttemptRef(1, 2, 3), AttemptRef(4, 5, 6)]),
    Shutdown(reason="driver stopping"),
    Started(jobs=[START]),
    Completed(jobs=[RESULT, JobResult(1, 4, 1, Outcome.SUCCESS, 0, None, 2.0)]),
    Heartbeat(time=1700000000.0, n_running=3, free_mcpu=250),
    Retiring(idle_s=300.0),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.type)
def test_round_trip(message: object) -> None:
    assert decode(message.to_json()) == message  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        '{"type": "launch"}',
        '{"type": "cancel"}',
        '{"no": "type"}',
        '{"type": "completed", "jobs": [{"batch_id": 1}]}',
    ],
)
def test_bad_frames_are_protocol_errors(frame: str) -> None:
    with pytest.raises(ProtocolError):
        decode(frame)
