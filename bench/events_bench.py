"""Benchmark: events ingested through Store.record_events, and webhook deliveries to a local receiver.

    .venv/bin/python bench/events_bench.py [--events 4000] [--deliveries 10000] [--pg URL]

SQLite always (a temp file); PostgreSQL too when --pg or KTI_TEST_POSTGRES_URL is given (a fresh
schema, dropped afterwards). Ingest runs 8 client threads, once posting single events and once
batches of 100; delivery records N events for one subscription, then times a Worker draining them (``drain``,
and again with the service's loop, ``run_forever``) to
a local ThreadingHTTPServer that answers 204 without verifying (the receiver is not the
bottleneck being measured, the outbox is; it runs in its own process).
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, os.environ.get("KTI_BENCH_SRC") or str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe, machine  # noqa: E402

try:
    from kti_policy.hooks.delivery import Worker
    from kti_policy.hooks.subscriptions import Subscription, parse_secret
    from kti_policy.store.db import Store, status_counts
    from kti_policy.store.pseudonym import Pseudonymizer
except ImportError:  # the flat layout of older revisions (bench/ab_issue14.sh)
    from kti_policy.delivery import Worker  # type: ignore[no-redef]
    from kti_policy.pseudonym import Pseudonymizer  # type: ignore[no-redef]

    from kti_policy.hooks import Subscription, parse_secret  # type: ignore[no-redef]
    from kti_policy.store import Store, status_counts  # type: ignore[no-redef]

THREADS = 8


def events(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}-{i}",
            "type": "objection.registered",
            "subject_id": f"cust-{i % 5000}",
            "occurred_at": "2026-03-01T10:00:00+02:00",
            "data": {"scope": "direct_marketing"},
        }
        for i in range(n)
    ]


@contextmanager
def database(kind: str, pg_url: str | None) -> Iterator[tuple[str, str | None]]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as d:
            yield f"sqlite:///{d}/bench.sqlite3", None
        return
    import psycopg

    assert pg_url
    schema = f"kti_bench_{secrets.token_hex(4)}"
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_url, schema
    finally:
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


def ingest(store: Store, evs: list[dict[str, Any]], batch: int) -> float:
    chunks = [evs[k::THREADS] for k in range(THREADS)]

    def client(chunk: list[dict[str, Any]]) -> None:
        for i in range(0, len(chunk), batch):
            store.record_events(chunk[i : i + batch], batch=True)

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(evs) / (time.perf_counter() - t0)


class Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Receiver(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs under 8 concurrent senders: 1 s stalls


def serve_receiver(port: int) -> None:
    """The receiver runs in its own process so that it does not share the worker's GIL."""
    Receiver(("127.0.0.1", port), Quiet).serve_forever()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("receiver did not start")


def run(kind: str, pg_url: str | None, n_events: int, n_deliveries: int) -> None:
    key = Pseudonymizer("bench-key-0123456789abcdef")
    with database(kind, pg_url) as (url, schema):
        store = Store(url, key, [], schema=schema)
        single = ingest(store, events("s", n_events), 1)
        batched = ingest(store, events("b", n_events * 5), 100)
        store.close()
        print(
            f"{kind:10} ingest: {single:8.0f} events/s single ({THREADS} threads), "
            f"{batched:8.0f} events/s in batches of 100"
        )

    port = free_port()
    receiver = multiprocessing.Process(target=serve_receiver, args=(port,), daemon=True)
    receiver.start()
    wait_for_port(port)
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    sub = Subscription(
        "bench",
        f"http://127.0.0.1:{port}/",
        frozenset({"objection.registered"}),
        "X",
        secret=parse_secret(secret, "X"),
    )
    with database(kind, pg_url) as (url, schema):
        store = Store(url, key, [sub], schema=schema)
        evs = events("d", n_deliveries)
        for i in range(0, len(evs), 500):
            store.record_events(evs[i : i + 500], batch=True)
        worker = Worker(store, jitter=0, batch_size=64, concurrency=8)
        t0 = time.perf_counter()
        sent = worker.drain()
        elapsed = time.perf_counter() - t0
        worker.close()
        counts = status_counts(store)
        print(
            f"{kind:10} deliver: {sent} delivered in {elapsed:.1f} s = {sent / elapsed:6.0f}/s "
            f"(drain: rounds of 64 on 8 sender threads); statuses {counts}"
        )
        # the service's loop (run_forever): 8 attempts kept under way, each slot refilled as it frees
        evs = events("f", n_deliveries)
        for i in range(0, len(evs), 500):
            store.record_events(evs[i : i + 500], batch=True)
        before = counts["delivered"]
        worker = Worker(store, jitter=0, concurrency=8, poll_interval=0.05)
        t0 = time.perf_counter()
        thread = worker.start_background()
        while status_counts(store)["delivered"] - before < n_deliveries and time.perf_counter() - t0 < 600:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        worker.stop()
        thread.join()
        counts = status_counts(store)
        store.close()
        sent = counts["delivered"] - before
        print(
            f"{kind:10} deliver: {sent} delivered in {elapsed:.1f} s = {sent / elapsed:6.0f}/s "
            f"(run_forever, the service's loop: 8 sender threads); statuses {counts}"
        )
    receiver.terminate()
    receiver.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=4000)
    ap.add_argument("--deliveries", type=int, default=10000)
    ap.add_argument("--pg", default=os.environ.get("KTI_TEST_POSTGRES_URL"))
    args = ap.parse_args()
    print(describe(machine()))
    run("sqlite", None, args.events, args.deliveries)
    if args.pg:
        run("postgresql", args.pg, args.events, args.deliveries)
    else:
        print("postgresql: skipped (give --pg URL or set KTI_TEST_POSTGRES_URL)")


if __name__ == "__main__":
    main()
