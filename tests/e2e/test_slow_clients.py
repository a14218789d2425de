"""Issue 13 item 1: slow clients must not stop the service (the configuration README tells users to run).

50 connections drip a request body and 50 drip their headers, one byte a second each, without a key;
meanwhile one client asks for decisions on a kept-alive connection. Every decision must be answered,
with p99 under 100 ms. Against ``gunicorn -c gunicorn.conf.py`` as shipped (the gevent worker is the
default); with the old gthread default (2 workers x 4 threads) the dripping connections held every
thread and the decisions timed out.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

from e2e.server import GunicornServer

KEY = "slow-test-query-key"
DECISION = {
    "operation": "disclose",
    "data_categories": ["email"],
    "recipient": {"type": "authority", "country": "FI"},
    "legal_basis": {"type": "legal_obligation"},
    "subject": {"id": "c-slow-1"},
}
SLOW_BODY = 50
SLOW_HEADERS = 50
DRIP_SECONDS = 8.0


def _open_slow(port: int, kind: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if kind == "body":
        s.sendall(
            b"POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{"
        )
    else:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    s.setblocking(False)
    return s


def _drip(socks: list[tuple[socket.socket, str]], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for s, kind in socks:
            try:
                s.send(b" " if kind == "body" else b"X")
            except (BlockingIOError, OSError):
                pass


def test_slow_bodies_and_headers_do_not_stop_decisions(tmp_path: Path) -> None:
    # the shipped gunicorn.conf.py defaults; only the bind, folders and keys differ
    with GunicornServer(tmp_path, {"KTI_API_KEYS": f"{KEY}:query"}, workers=2) as srv:
        socks = [(_open_slow(srv.port, "body"), "body") for _ in range(SLOW_BODY)]
        socks += [(_open_slow(srv.port, "headers"), "headers") for _ in range(SLOW_HEADERS)]
        stop = threading.Event()
        dripper = threading.Thread(target=_drip, args=(socks, stop), daemon=True)
        dripper.start()
        time.sleep(1.5)  # let every slow connection be accepted and stuck
        latencies: list[float] = []
        failures: list[str] = []
        body = json.dumps(DECISION)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        try:
            end = time.monotonic() + DRIP_SECONDS - 1.5
            while time.monotonic() < end:
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/v1/decisions", body=body, headers=headers)
                    resp = conn.getresponse()
                    answer = json.loads(resp.read())
                    if resp.status != 200 or answer.get("decision") != "allow":
                        failures.append(f"{resp.status} {answer}")
                except (OSError, http.client.HTTPException) as exc:
                    failures.append(repr(exc))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.02)
        finally:
            stop.set()
            dripper.join(5)
            conn.close()
            for s, _ in socks:
                s.close()
        assert not failures, f"{len(failures)} of {len(latencies)} decisions failed: {failures[:3]}"
        assert len(latencies) >= 50
        latencies.sort()
        p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
        print(f"slow clients: {len(latencies)} decisions, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
        assert p99 < 0.100, f"p99 {p99 * 1000:.0f} ms"
