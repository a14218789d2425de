"""The decision log on a pipe (``KTI_DECISION_LOG=-`` under Docker or systemd) keeps lines whole
when several worker processes write batches at once; a regular file gets one write per batch."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from kti_policy.api.decision_log import DecisionLog, _whole_lines


def test_whole_lines_groups_within_the_limit() -> None:
    lines = [b"a" * 10 + b"\n", b"b" * 10 + b"\n", b"c" * 30 + b"\n", b"d\n"]
    chunks = _whole_lines(lines, 25)
    assert chunks == [lines[0] + lines[1], lines[2], lines[3]]
    assert b"".join(chunks) == b"".join(lines)


def test_several_processes_on_one_pipe_keep_lines_whole() -> None:
    read_fd, write_fd = os.pipe()
    pids = []
    for worker in range(4):
        pid = os.fork()
        if pid == 0:  # a gunicorn worker: stdout is the shared pipe
            try:
                os.close(read_fd)
                os.dup2(write_fd, 1)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115  (pytest captures the real one)
                log = DecisionLog.open("-")
                records = [{"worker": worker, "i": i, "pad": "x" * 800} for i in range(100)]
                for _ in range(30):
                    log.write_many(records)  # ~90 KB per batch, far above PIPE_BUF
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    for pid in pids:
        os.waitpid(pid, 0)
    lines = data.split(b"\n")[:-1]
    assert len(lines) == 4 * 30 * 100
    assert all(json.loads(line)["pad"] == "x" * 800 for line in lines)


def test_a_regular_file_gets_one_write_per_batch(tmp_path: Path) -> None:
    log = DecisionLog.open(str(tmp_path / "d.jsonl"))
    try:
        assert log._chunk is None
        log.write_many([{"i": i} for i in range(3)])
    finally:
        log.close()
    assert [json.loads(x)["i"] for x in (tmp_path / "d.jsonl").read_text().splitlines()] == [0, 1, 2]
