"""Where one decision request's CPU goes inside the app, without HTTP, gunicorn or a second process.

    .venv/bin/python bench/app_profile.py [-n 3000] [--rounds 3] [--top 25] [--profile single,batch]
        [--as-of] [--facts-cache-size N]

Builds the app as gunicorn would (SQLite in a temporary folder, API keys on, decision log to a file),
records the workload's subject facts, then, ``rounds`` times in turn (so that the machine's moods hit
every side alike), times ``n`` ``GET /healthz``, ``n`` single decisions, ``n / 100`` batches of 100
through Flask's test client and the engine's warm ``Decider.decide`` over the same ``n`` operations
(parsed once, a second pass through the match cache, as ``bench/engine_bench.py`` "engine (cached,
2nd pass)"). Prints the best CPU microseconds of each and the ratios of issue 14 (a single decision
<= 2x ``/healthz``; a decision in a batch <= 3x the warm decide), then profiles each form under
cProfile with the functions of most cumulative time. ``bench/http_bench.py`` measures the whole
server; this says how much of a request is the app's own work, and which part of it.

No event is recorded while it times, so after the warm-up every subject's facts come from the
facts cache (the usual case between events); ``--facts-cache-size 0`` times the other case, every
request reading the subject's events (as the first request after any new event does).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, os.environ.get("KTI_BENCH_SRC") or str(REPO / "src"))  # bench/ab_issue14.sh: another revision's

from http_bench import API_KEY, BATCH, fact_events  # noqa: E402
from machine import describe, machine  # noqa: E402
from workload import generate  # noqa: E402

try:
    from kti_policy.api.app import create_app
    from kti_policy.decide.decision import Decider
    from kti_policy.decide.operation import parse_operation
    from kti_policy.policy.loader import load_policy_set
except ImportError:  # the flat layout of older revisions (bench/ab_issue14.sh)
    from kti_policy.decision import Decider  # type: ignore[no-redef]
    from kti_policy.loader import load_policy_set  # type: ignore[no-redef]
    from kti_policy.operation import parse_operation  # type: ignore[no-redef]

    from kti_policy.app import create_app  # type: ignore[no-redef]

ENGINE_NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # as bench/engine_bench.py


def _per_decision(run: Callable[[], int]) -> float:
    """CPU microseconds per decision of one ``run()`` (which returns how many it decided)."""
    cpu = time.process_time()
    decisions = run()
    return (time.process_time() - cpu) / decisions * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of every form, in turn (best counts)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--profile", default="single,batch", help="forms to profile (comma list; empty: none)")
    ap.add_argument("--policies", type=Path, default=REPO / "policies")
    ap.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    ap.add_argument("--as-of", action="store_true",
                    help="keep the workload's past `at` (every decision reads facts as of then); "
                         "default: no `at`, the usual path (facts now)")
    ap.add_argument("--facts-cache-size", type=int, default=None,
                    help="KTI_FACTS_CACHE_SIZE (default: the service's; 0: every request reads the "
                         "events, as after a new event anywhere)")
    args = ap.parse_args(argv)
    print(describe(machine()))
    policy_set = load_policy_set(str(args.policies))
    items = generate(max(args.n, 2000), vocab=policy_set.vocabulary)
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
            **({} if args.facts_cache_size is None else {"KTI_FACTS_CACHE_SIZE": args.facts_cache_size}),
        })
        client = app.test_client()
        headers = {"Authorization": f"Bearer {API_KEY}"}
        events = fact_events(items)
        for i in range(0, len(events), 1000):
            resp = client.post("/v1/events/batch", json={"events": events[i:i + 1000]}, headers=headers)
            assert resp.status_code in (200, 201), resp.get_data(as_text=True)
        bodies = [b if args.as_of else {k: v for k, v in b.items() if k != "at"} for b, _ in items]
        singles = [json.dumps(b) for b in bodies[: args.n]]
        batches = [json.dumps({"operations": bodies[i:i + BATCH]})
                   for i in range(0, args.n - BATCH + 1, BATCH)]
        decider = Decider(policy_set)
        parsed = [(parse_operation(b, policy_set.vocabulary), f) for b, f in items[: args.n]]

        def healthz() -> int:
            for _ in singles:
                client.get("/healthz")
            return len(singles)

        def posts(path: str, bodies: list[str], per: int) -> Callable[[], int]:
            def run() -> int:
                for body in bodies:
                    resp = client.post(path, data=body, content_type="application/json", headers=headers)
                    assert resp.status_code == 200, resp.get_data(as_text=True)
                return len(bodies) * per
            return run

        def engine_warm() -> int:
            for op, facts in parsed:
                decider.decide(op, facts, ENGINE_NOW)
            return len(parsed)

        forms: dict[str, Callable[[], int]] = {
            "GET /healthz": healthz,
            "single": posts("/v1/decisions", singles, 1),
            "batch of 100": posts("/v1/decisions/batch", batches, BATCH),
            "engine warm decide": engine_warm,
        }
        for run in forms.values():  # warm up: imports, caches, the engine's match cache
            run()
        best: dict[str, float] = {}
        for r in range(args.rounds):
            for name, run in forms.items():
                us = _per_decision(run)
                best[name] = min(best.get(name, us), us)
                print(f"round {r + 1}: {name:20} {us:8.1f} us CPU per request/decision")
        print(f"\nbest of {args.rounds} rounds, CPU us per request (healthz) or per decision:")
        for name, us in best.items():
            print(f"  {name:20} {us:8.1f} us  ({1e6 / us:,.0f}/s in one thread, no HTTP)")
        single_ratio = best["single"] / best["GET /healthz"]
        batch_ratio = best["batch of 100"] / best["engine warm decide"]
        print(f"target 2: single / healthz = {single_ratio:.2f}x (at most 2x: "
              f"{'met' if single_ratio <= 2 else 'NOT met'})")
        print(f"target 3: batch decision / engine warm decide = {batch_ratio:.2f}x (at most 3x: "
              f"{'met' if batch_ratio <= 3 else 'NOT met'})")

        wanted = [f for f in args.profile.split(",") if f]
        for name in ("single", "batch of 100"):
            if name.split()[0] not in wanted:
                continue
            prof = cProfile.Profile()
            prof.enable()
            us = _per_decision(forms[name])
            prof.disable()
            print(f"\n{name} under cProfile: {us:.0f} us CPU per decision")
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats(args.sort).print_stats(args.top)
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:8000])
        app.extensions["kti"].close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
