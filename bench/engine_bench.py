"""Decision throughput and latency: durable-rules with its cache, raw durable-rules, the reference.

    python bench/engine_bench.py [--policies policies] [-n 20000] [--seed 2026] [--json FILE]

Parses the seeded workload (``bench/workload.py``) once, then times ``Decider.decide`` per
operation for each variant, in one process. Target for the engine path: mean <= 50 us,
p99 <= 200 us per decision.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe, machine  # noqa: E402
from workload import generate  # noqa: E402

from kti_policy.decide.decision import Decider  # noqa: E402
from kti_policy.decide.operation import parse_operation  # noqa: E402
from kti_policy.policy.loader import load_policy_set  # noqa: E402

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def run(decider: Decider, items: list[Any]) -> dict[str, Any]:
    times: list[float] = []
    allowed = 0
    clock = time.perf_counter_ns
    start = clock()
    for op, facts in items:
        t0 = clock()
        d = decider.decide(op, facts, NOW)
        times.append((clock() - t0) / 1000)
        allowed += d.allowed
    total = (clock() - start) / 1e9
    times.sort()
    return {
        "decisions": len(items),
        "decisions_per_s": round(len(items) / total),
        "mean_us": round(statistics.fmean(times), 1),
        "p50_us": round(times[len(times) // 2], 1),
        "p99_us": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
        "max_us": round(times[-1], 1),
        "allowed": allowed,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default="policies")
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)

    ps = load_policy_set(args.policies)
    items = [(parse_operation(body, ps.vocabulary), facts)
             for body, facts in generate(args.n, args.seed, ps.vocabulary)]
    variants = {
        "engine (cached)": Decider(ps),
        "engine (cache_size=0)": Decider(ps, cache_size=0),
        "reference": Decider(ps, use_engine=False),
    }
    for d in variants.values():  # warm up: registration, imports, calendar caches
        run(d, items[:200])
    results = {name: run(d, items) for name, d in variants.items()}
    # the same operations again through the now-warm match cache: a long-running service's steady state
    results["engine (cached, 2nd pass)"] = run(variants["engine (cached)"], items)
    ref = [variants["reference"].decide(op, f, NOW).rule_ids for op, f in items[:2000]]
    eng = [variants["engine (cache_size=0)"].decide(op, f, NOW).rule_ids for op, f in items[:2000]]
    report = {"machine": machine(), "policy_version": ps.version, "rules": len(ps.rules),
              "workload": {"n": args.n, "seed": args.seed}, "results": results,
              "engine_agrees_with_reference_on_first_2000": ref == eng}

    print(describe(report["machine"]))
    print(f"policies: {args.policies} ({len(ps.rules)} rules, version {ps.version}); {args.n} operations, seed {args.seed}")
    print(f"{'variant':24} {'dec/s':>9} {'mean us':>9} {'p50 us':>9} {'p99 us':>9} {'max us':>9}")
    for name, r in results.items():
        print(f"{name:24} {r['decisions_per_s']:>9} {r['mean_us']:>9} {r['p50_us']:>9} {r['p99_us']:>9} {r['max_us']:>9}")
    cached = results["engine (cached)"]
    ok = cached["mean_us"] <= 50 and cached["p99_us"] <= 200
    print(f"target (engine, cached: mean <= 50 us, p99 <= 200 us): {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
