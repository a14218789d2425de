"""Issue 13 items 4 and 11 against the real servers (gunicorn with ``gunicorn.conf.py``, and
``kti-policy serve``): the clear subject id never reaches a log, whatever path variant carries it,
and a chunked body over ``KTI_MAX_BODY_BYTES`` is a 413, not cut and parsed."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from e2e.server import DEFAULT_POLICIES, GunicornServer, free_port

CLEAR = "alice@example.com"
SECOND = "bob-0042"


def _variants(sid: str) -> list[str]:
    return [
        f"/v1/subjects/{sid}",
        f"//v1//subjects/{sid}",  # a base URL joined with one slash too many: werkzeug answers 308
        f"/v1//subjects/{sid}",
        f"/V1/subjects/{sid}",
        f"/v1/Subjects/{sid}",
        f"/v1/subjects/{sid}/",
        f"/v1/subjects/{sid}?x=1",
        f"/v1/subjects/{sid.replace('@', '%40')}",
        f"/v1/SUBJECTS/{sid}",
        f"/nothing/here/{sid}",
        f"/v1/decisions?subject={sid}",
        f"/v1/subjects/{sid}%2F..%2F",
    ]


def _raw_get(port: int, target: str) -> int:
    """A GET with the target exactly as given (requests would normalise it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers={"Host": "127.0.0.1"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _post_event(url: str, sid: str) -> None:
    r = requests.post(url + "/v1/events", timeout=10, json={
        "id": f"e-{abs(hash(sid)) % 10**8}", "type": "relationship.started", "subject_id": sid,
        "occurred_at": "2026-03-02T10:00:00+02:00", "data": {},
    })
    assert r.status_code in (200, 201), r.text


def _assert_no_clear_id(text: str) -> None:
    for sid in (CLEAR, SECOND, CLEAR.replace("@", "%40"), SECOND.upper()):
        assert sid.lower() not in text.lower(), [line for line in text.splitlines() if sid.lower() in line.lower()][:5]


def test_gunicorn_logs_never_hold_the_clear_subject_id(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    srv = GunicornServer(tmp_path / "srv", {"KTI_ACCESS_LOG": str(access), "KTI_LOG_LEVEL": "debug"}, workers=1)
    with srv:
        _post_event(srv.url, CLEAR)
        statuses = {target: _raw_get(srv.port, target) for sid in (CLEAR, SECOND) for target in _variants(sid)}
        assert statuses[f"/v1/subjects/{CLEAR}"] == 200
        assert statuses[f"//v1//subjects/{CLEAR}"] == 308
    text = access.read_text() + srv.log_text()
    assert "GET /v1/subjects/<redacted>" in text
    assert "<unmatched>" in text
    _assert_no_clear_id(text)


def test_serve_logs_never_hold_the_clear_subject_id(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTI_")}
    env.update({"KTI_POLICY_DIR": str(DEFAULT_POLICIES), "KTI_INSTANCE_DIR": str(tmp_path / "inst"),
                "KTI_HOOKS_DIR": str(tmp_path / "hooks"), "KTI_LOG_LEVEL": "DEBUG"})
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("kti-policy")), "serve", "--port", str(port), "--no-delivery"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        _post_event(url, CLEAR)
        for sid in (CLEAR, SECOND):
            for target in _variants(sid):
                _raw_get(port, target)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    text = log.read_text(errors="replace")
    assert "/v1/subjects/<redacted>" in text, text[-2000:]
    _assert_no_clear_id(text)


@pytest.fixture(scope="module")
def small_body_server(tmp_path_factory: pytest.TempPathFactory) -> GunicornServer:
    with GunicornServer(tmp_path_factory.mktemp("chunked"), {"KTI_MAX_BODY_BYTES": "300"}, workers=1) as srv:
        yield srv


def _post_chunked(port: int, body: bytes, chunk: int = 64) -> tuple[int, dict[str, object]]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        for i in range(0, len(body), chunk):
            part = body[i : i + chunk]
            s.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        data = b""
        while chunk_in := s.recv(65536):
            data += chunk_in
    finally:
        s.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_chunked_body_over_the_limit_is_413(small_body_server: GunicornServer) -> None:
    decision = {"operation": "delete", "subject": {"id": "c-1"}}
    body = json.dumps(decision).encode()
    status, answer = _post_chunked(small_body_server.port, body)
    assert status == 200, answer
    # a complete object within the first 300 bytes, then more: cut at the limit it would parse
    status, answer = _post_chunked(small_body_server.port, body + b" " * 400)
    assert status == 413, answer
    assert answer["error"] == "payload_too_large"
