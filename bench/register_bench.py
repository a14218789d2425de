"""Benchmark: the obligations register (issue 12).

    .venv/bin/python bench/register_bench.py [--cases 10000] [--open 100000] [--pg URL]

1. Opening cases: ``--cases`` access requests through ``Register.open_request`` (one transaction
   each, as ``POST /v1/requests`` does), then as many ``access_request.received`` and
   ``erasure.requested`` events through ``Store.record_events`` in batches of 100 (the case, and
   for erasures two deletion tasks with their ``deletion.due`` outbox rows, in the event's
   transaction). Two subscriptions hold data, so every erasure opens two tasks.
2. The scheduler: ``--open`` open obligations (bulk-inserted, due dates spread over 400 days), then
   ``ObligationScheduler.run_once`` with a frozen clock: the first pass of a day (what became due
   soon since the last one is reminded) and the same pass again (the steady state every minute).

SQLite always (a temp file); PostgreSQL too with --pg or KTI_TEST_POSTGRES_URL (a fresh schema).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe, machine  # noqa: E402

from kti_policy.hooks.subscriptions import Subscription, parse_secret  # noqa: E402
from kti_policy.register.ledger import Register  # noqa: E402
from kti_policy.register.scheduler import ObligationScheduler  # noqa: E402
from kti_policy.register.tables import obligations_t  # noqa: E402
from kti_policy.store.db import Store  # noqa: E402
from kti_policy.store.pseudonym import Pseudonymizer  # noqa: E402

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _subs() -> list[Subscription]:
    secret = parse_secret("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(), "X")
    events = frozenset({"obligation.due_soon", "obligation.overdue"})
    return [
        Subscription("billing", "http://127.0.0.1:9/b", events, "X", secret=secret,
                     holds=frozenset({"name", "email", "accounting_records"})),
        Subscription("marketing", "http://127.0.0.1:9/m", events, "X", secret=secret,
                     holds=frozenset({"email", "mobile_phone"})),
    ]


def _store(url: str, schema: str | None) -> Store:
    return Store(url, Pseudonymizer("bench-pseudonym-key-0123456789"), _subs(), schema=schema)


def bench_open(url: str, schema: str | None, n: int) -> None:
    store = _store(url, schema)
    reg = Register(store, clock=lambda: START + timedelta(days=1))
    t0 = time.perf_counter()
    for i in range(n):
        reg.open_request({"type": "access", "subject_id": f"s-{i}", "reference": f"R-{i}",
                          "received_at": START.isoformat()}, "bench")
    dt = time.perf_counter() - t0
    print(f"  open_request x{n}: {dt:.1f} s, {n / dt:,.0f} cases/s, {dt / n * 1000:.2f} ms each")
    events = [
        {"id": f"ev-{i}", "type": "erasure.requested" if i % 2 else "access_request.received",
         "subject_id": f"e-{i}", "occurred_at": START.isoformat(),
         "data": {} if i % 2 else {"written": True, "signed": True}}
        for i in range(n)
    ]
    t0 = time.perf_counter()
    for k in range(0, n, 100):
        store.record_events(events[k:k + 100])
    dt = time.perf_counter() - t0
    print(f"  events x{n} in batches of 100 (half erasures: +2 tasks, +2 outbox rows each): "
          f"{dt:.1f} s, {n / dt:,.0f} events/s")
    store.close()


def bench_scheduler(url: str, schema: str | None, n: int) -> None:
    store = _store(url, schema)
    today = date(2027, 1, 4)
    rows = []
    now = datetime.now(UTC)
    for i in range(n):
        due = today + timedelta(days=8 + (i * 400) // n)  # none due soon or overdue yet
        rows.append({"kind": "case", "type": "respond_by", "request_type": "access",
                     "status": "open", "subject_key": f"hs_{i:064d}", "reference": f"B-{i}",
                     "case_key": f"access\x1fB-{i}", "rule": "Q1", "received": due - timedelta(days=31),
                     "due": due, "data_categories": "[]", "created_at": now})
    t0 = time.perf_counter()
    with store._write() as conn:
        for k in range(0, n, 5000):
            conn.execute(obligations_t.insert(), rows[k:k + 5000])
    print(f"  inserted {n:,} open obligations in {time.perf_counter() - t0:.1f} s")
    for label, day in (("first pass on day 1 (a day's worth newly due soon)", today),
                       ("first pass on day 5 (four days' worth newly due soon)",
                        today + timedelta(days=4))):
        clock_day = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=8)
        sched = ObligationScheduler(store, clock=lambda d=clock_day: d)
        t0 = time.perf_counter()
        sent = sched.run_once()
        dt = time.perf_counter() - t0
        print(f"  scheduler pass, {label}: {dt * 1000:,.0f} ms, reminded {json.dumps(sent)}")
        t0 = time.perf_counter()
        sched.run_once()
        print(f"  the same pass again (steady state: nothing new due): "
              f"{(time.perf_counter() - t0) * 1000:,.0f} ms")
    store.close()


def _pg_schema(url: str) -> tuple[str, Any]:
    import psycopg

    schema = f"kti_bench_{secrets.token_hex(4)}"
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f"CREATE SCHEMA {schema}")
    return schema, conn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--open", type=int, default=100_000)
    ap.add_argument("--pg", default=os.environ.get("KTI_TEST_POSTGRES_URL"))
    args = ap.parse_args()
    print(describe(machine()))
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite (WAL):")
        bench_open(f"sqlite:///{tmp}/open.sqlite3", None, args.cases)
        bench_scheduler(f"sqlite:///{tmp}/sched.sqlite3", None, args.open)
    if args.pg:
        for what in ("open", "sched"):
            schema, admin = _pg_schema(args.pg)
            try:
                if what == "open":
                    print("PostgreSQL:")
                    bench_open(args.pg, schema, args.cases)
                else:
                    bench_scheduler(args.pg, schema, args.open)
            finally:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")
                admin.close()


if __name__ == "__main__":
    main()
