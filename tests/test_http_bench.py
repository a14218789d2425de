"""Parts of ``bench/http_bench.py`` that README "Measured" relies on (no timing asserted): ``--warm``
against a real gunicorn with two workers (every worker decides every body of the workload once),
and the CPU counts of its "CPU us/req" column."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import http_bench  # noqa: E402

needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to see the workers")


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_seconds_counts_a_process_and_its_waited_children() -> None:
    mine, children = http_bench.cpu_seconds([os.getpid()]), http_bench.children_cpu_seconds()
    _burn(0.2)
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                    "while time.process_time() < end: pass"], check=True)
    assert http_bench.cpu_seconds([os.getpid()]) - mine >= 0.15  # clock ticks: 10 ms steps
    assert http_bench.children_cpu_seconds() - children >= 0.25
    assert http_bench.cpu_seconds([2**22 + 12345]) == 0  # no such process: nothing counted


def _workload() -> tuple[list[dict], list[bytes]]:
    items = http_bench.generate(3 * http_bench.BATCH)
    bodies = [{k: v for k, v in b.items() if k != "at"} for b, _ in items]
    batches = [json.dumps({"operations": bodies[i:i + http_bench.BATCH]}).encode()
               for i in range(0, len(bodies), http_bench.BATCH)]
    return bodies, batches


def _assert_each_worker_decided_each_body(note: str, log: Path, bodies: list[dict]) -> None:
    lines = log.read_bytes().splitlines()
    assert note == "warmed: 2 of 2 workers decided all 300 bodies once"
    assert len(lines) == 2 * len(bodies)  # each worker logged each body's decision once
    ids = [json.loads(line)["request"].get("operation") for line in lines]
    assert ids[: len(bodies)] == ids[len(bodies):] == [b["operation"] for b in bodies]


@needs_ss
def test_every_worker_decides_every_body(tmp_path: Path) -> None:
    bodies, batches = _workload()
    with http_bench.gunicorn(REPO / "policies", tmp_path, 2, 1, True, "gevent") as (host, port, server):
        workers = http_bench.worker_pids(server.pid)
        assert len(workers) == 2
        note = http_bench.warm_every_worker(host, port, workers, batches)
    _assert_each_worker_decided_each_body(note, tmp_path / "decisions.jsonl", bodies)


@needs_ss
def test_a_worker_still_loading_is_waited_for(tmp_path: Path) -> None:
    """CI once warmed 1 of 2 workers: /readyz answers once one worker is up, and a fixed count of
    connections ran out while the other was still loading. Here a worker is killed and the warming
    starts while gunicorn's replacement loads its policies."""
    bodies, batches = _workload()
    with http_bench.gunicorn(REPO / "policies", tmp_path, 2, 1, True, "gevent") as (host, port, server):
        before = http_bench.worker_pids(server.pid)
        os.kill(before[1], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (workers := http_bench.worker_pids(server.pid)) == before or len(workers) != 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.01)
        note = http_bench.warm_every_worker(host, port, workers, batches)
    _assert_each_worker_decided_each_body(note, tmp_path / "decisions.jsonl", bodies)
