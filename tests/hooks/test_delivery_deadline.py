"""Issue 13 item 7: a receiver that drips bytes must not hold a delivery past ``KTI_HOOK_TIMEOUT``.

``requests``' timeout is per read: one byte every 0.3 s never trips a 1 s timeout. Each attempt
now has a total deadline (``http_deadline.Deadline``), so it fails as a timeout after ~1 s."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import new_hook_secret

from kti_policy.hooks.delivery import Worker
from kti_policy.hooks.subscriptions import Subscription, parse_secret

DRIP_FOR = 15.0


@pytest.fixture(params=["headers", "body"])
def dripping_receiver(request: pytest.FixtureRequest) -> Iterator[str]:
    """Answers every request one byte every 0.3 s (in its headers, or in a 500's body)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)
                if request.param == "body":
                    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\n")
                    head = b""
                else:
                    head = b"HTTP/1.1 200 OK\r\nX-Slow: "
                    conn.sendall(head)
                end = time.monotonic() + DRIP_FOR
                while time.monotonic() < end and not stop.is_set():
                    conn.sendall(b"a")
                    time.sleep(0.3)
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    server.close()


def test_dripping_receiver_is_cut_at_the_timeout(make_store: Any, dripping_receiver: str) -> None:
    secret = new_hook_secret()
    sub = Subscription("drip", dripping_receiver, frozenset({"erasure.requested"}), "X",
                       secret=parse_secret(secret, "X"))
    store = make_store([sub])
    store.record_events([{"id": "ev-drip-1", "type": "erasure.requested", "subject_id": "c-drip",
                          "occurred_at": "2026-03-01T10:00:00+02:00", "data": {}}])
    worker = Worker(store, schedule=(60,), jitter=0, timeout=1.0)
    t0 = time.monotonic()
    assert worker.run_once() == 0
    took = time.monotonic() - t0
    assert took < 3.0, f"one attempt took {took:.1f} s with a 1 s timeout"
    [d] = store.list_deliveries()
    assert d["status"] == "pending" and d["attempt_count"] == 1
    assert "Timeout" in d["last_error"], d["last_error"]
