"""``bench/http_bench.py --warm`` does what README "Measured" says it does: against a real gunicorn
with two workers, every worker decides every body of the workload once (no timing asserted)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import http_bench  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to see the workers")


def test_every_worker_decides_every_body(tmp_path: Path) -> None:
    items = http_bench.generate(3 * http_bench.BATCH)
    bodies = [{k: v for k, v in b.items() if k != "at"} for b, _ in items]
    batches = [json.dumps({"operations": bodies[i:i + http_bench.BATCH]}).encode()
               for i in range(0, len(bodies), http_bench.BATCH)]
    with http_bench.gunicorn(REPO / "policies", tmp_path, 2, 1, True, "gevent") as (host, port, server):
        workers = http_bench.worker_pids(server.pid)
        assert len(workers) == 2
        note = http_bench.warm_every_worker(host, port, workers, batches)
        lines = (tmp_path / "decisions.jsonl").read_bytes().splitlines()
    assert note == "warmed: 2 of 2 workers decided all 300 bodies once"
    assert len(lines) == 2 * len(bodies)  # each worker logged each body's decision once
    ids = [json.loads(line)["request"].get("operation") for line in lines]
    assert ids[: len(bodies)] == ids[len(bodies):] == [b["operation"] for b in bodies]
