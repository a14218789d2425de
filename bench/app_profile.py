"""Where one decision request's CPU goes inside the app, without HTTP, gunicorn or a second process.

    .venv/bin/python bench/app_profile.py [-n 3000] [--top 25]

Builds the app as gunicorn would (SQLite in a temporary folder, API keys on, decision log to a file),
records the workload's subject facts, then sends ``n`` single decisions and ``n / 100`` batches of 100
through Flask's test client under cProfile. Prints CPU microseconds per decision for each form and the
functions with the most cumulative time. ``bench/http_bench.py`` measures the whole server; this says
how much of a request is the app's own work, and which part of it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO / "src"))

from http_bench import API_KEY, BATCH, fact_events  # noqa: E402
from machine import describe, machine  # noqa: E402
from workload import generate  # noqa: E402

from kti_policy.api.app import create_app  # noqa: E402
from kti_policy.policy.loader import load_policy_set  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--policies", type=Path, default=REPO / "policies")
    ap.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    args = ap.parse_args(argv)
    print(describe(machine()))
    items = generate(max(args.n, 2000), vocab=load_policy_set(str(args.policies)).vocabulary)
    with tempfile.TemporaryDirectory(prefix="kti-app-profile-") as tmp:
        work = Path(tmp)
        (work / "hooks").mkdir()
        app = create_app({
            "KTI_POLICY_DIR": str(args.policies),
            "KTI_HOOKS_DIR": str(work / "hooks"),
            "KTI_INSTANCE_DIR": str(work),
            "KTI_DATABASE_URL": f"sqlite:///{work / 'kti.sqlite3'}",
            "KTI_PSEUDONYM_KEY": "bench-pseudonym-key-0123456789abcdef",
            "KTI_API_KEYS": f"{API_KEY}:query+ingest",
            "KTI_DECISION_LOG": str(work / "decisions.jsonl"),
        })
        client = app.test_client()
        headers = {"Authorization": f"Bearer {API_KEY}"}
        events = fact_events(items)
        for i in range(0, len(events), 1000):
            resp = client.post("/v1/events/batch", json={"events": events[i:i + 1000]}, headers=headers)
            assert resp.status_code in (200, 201), resp.get_data(as_text=True)
        singles = [json.dumps(b) for b, _ in items[: args.n]]
        batches = [json.dumps({"operations": [b for b, _ in items[i:i + BATCH]]})
                   for i in range(0, args.n - BATCH + 1, BATCH)]
        for body in singles[:100]:  # warm up
            client.post("/v1/decisions", data=body, content_type="application/json", headers=headers)

        for name, path, bodies, per in (("single", "/v1/decisions", singles, 1),
                                        ("batch of 100", "/v1/decisions/batch", batches, BATCH)):
            wall, cpu = time.perf_counter(), time.process_time()
            for body in bodies:  # once without the profiler: the honest cost
                client.post(path, data=body, content_type="application/json", headers=headers)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            decisions = len(bodies) * per
            print(f"\n{name}: {len(bodies)} requests, {decisions} decisions: "
                  f"{wall / decisions * 1e6:.0f} us wall, {cpu / decisions * 1e6:.0f} us CPU per decision "
                  f"({decisions / wall:,.0f} decisions/s in one thread, no HTTP)")
            prof = cProfile.Profile()
            start = time.process_time()
            prof.enable()
            for body in bodies:
                resp = client.post(path, data=body, content_type="application/json", headers=headers)
                assert resp.status_code == 200, resp.get_data(as_text=True)
            prof.disable()
            print(f"under cProfile: {(time.process_time() - start) / decisions * 1e6:.0f} us CPU per decision")
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats(args.sort).print_stats(args.top)
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])
        app.extensions["kti"].close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
