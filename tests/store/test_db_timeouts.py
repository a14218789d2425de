"""Issue 13 item 5: a PostgreSQL that accepts connections but answers nothing.

A TCP proxy in front of the test database forwards until ``stall()``; then it keeps every
connection open (and accepts new ones) but passes no byte either way, as a network partition
behind a load balancer does. Decisions must fail closed (deny ``eval_error``) within a few seconds,
``/readyz`` must say 503, and events 503, instead of hanging their threads for ever.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from kti_policy.api.app import create_app

PG = os.environ.get("KTI_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not PG, reason="needs KTI_TEST_POSTGRES_URL (PostgreSQL)")

TIMEOUT = 2.0
BOUND = 3 * TIMEOUT + 2  # connect or pre-ping, then the statement, plus slack on a busy machine
DECISION = {"operation": "delete", "subject": {"id": "c-partition-1"}}


class StallProxy:
    """Forwards 127.0.0.1:<port> to ``upstream`` until ``stall()``; then passes nothing."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.stalled = threading.Event()
        self.closing = threading.Event()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(128)
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.stalled.is_set():
                continue  # accepted, never answered
            upstream = socket.create_connection(self.upstream)
            self.sockets.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while not self.closing.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            while self.stalled.is_set() and not self.closing.is_set():
                time.sleep(0.05)  # hold the bytes: the peer hears nothing
            try:
                dst.sendall(data)
            except OSError:
                return

    def stall(self) -> None:
        self.stalled.set()

    def close(self) -> None:
        self.closing.set()
        self.server.close()
        for s in self.sockets:
            s.close()


@pytest.fixture
def partitioned(tmp_path: Path) -> Any:
    import psycopg

    assert PG is not None
    schema = f"kti_t_{secrets.token_hex(6)}"
    with psycopg.connect(PG, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    url = sa.engine.make_url(PG)
    proxy = StallProxy((url.host or "127.0.0.1", url.port or 5432))
    config = {
        "KTI_POLICY_DIR": str(Path(__file__).parent.parent / "data" / "clean"),
        "KTI_INSTANCE_DIR": str(tmp_path / "instance"),
        "KTI_HOOKS_DIR": str(tmp_path / "hooks"),
        "KTI_DATABASE_URL": url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        "KTI_DATABASE_SCHEMA": schema,
        "KTI_DATABASE_TIMEOUT": str(TIMEOUT),
        "KTI_PSEUDONYM_KEY": "partition-test-key-0123456789",
    }
    app = create_app(config)
    try:
        yield app, proxy
    finally:
        proxy.close()
        app.extensions["kti"].close()
        with psycopg.connect(PG, autocommit=True) as c:
            c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


def test_silent_database_fails_closed_within_seconds(partitioned: Any) -> None:
    app, proxy = partitioned
    client = app.test_client()
    event = {"id": "ev-p-1", "type": "relationship.started", "subject_id": "c-partition-1",
             "occurred_at": "2026-03-02T10:00:00+02:00", "data": {}}
    assert client.post("/v1/events", json=event).status_code == 201
    assert client.post("/v1/decisions", json=DECISION).get_json()["decision"] == "allow"
    assert client.get("/readyz").status_code == 200

    proxy.stall()

    resp, took = _timed(lambda: client.post("/v1/decisions", json=DECISION))
    assert resp.status_code == 200 and took < BOUND, took
    answer = resp.get_json()
    assert answer["decision"] == "deny" and [r["rule"] for r in answer["reasons"]] == ["eval_error"]

    resp, took = _timed(lambda: client.get("/readyz"))
    assert resp.status_code == 503 and took < BOUND, took
    assert resp.get_json()["checks"]["database"] == "unreachable"

    resp, took = _timed(lambda: client.post("/v1/events", json={**event, "id": "ev-p-2"}))
    assert resp.status_code == 503 and took < BOUND, took
    assert resp.headers["Retry-After"]

    # 8 at once (what used to stop a gthread worker for good): every one answered, in time
    def decide() -> tuple[int, str, float]:
        r, t = _timed(lambda: app.test_client().post("/v1/decisions", json=DECISION))
        return r.status_code, r.get_json()["decision"], t

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: decide(), range(8)))
    assert all(status == 200 and decision == "deny" for status, decision, _ in results), results
    assert max(t for *_, t in results) < 2 * BOUND, results
