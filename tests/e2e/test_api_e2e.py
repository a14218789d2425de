"""End to end against a real gunicorn on 127.0.0.1 (``tests/e2e/server.py``): every endpoint, every
error class, auth roles, reload propagation across 2 workers, multiprocess metrics, the decision
log, and the refusal to serve a public address without keys."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from e2e.server import GunicornServer, free_port, run_gunicorn_expecting_failure

pytestmark = pytest.mark.timeout(180)

DISCLOSE_OK = {
    "operation": "disclose",
    "data_categories": ["email"],
    "recipient": {"type": "authority", "country": "FI"},
    "legal_basis": {"type": "legal_obligation"},
    "subject": {"id": "customer-4711"},
}


def assert_json_error(resp: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert body["error"] == code and isinstance(body["message"], str) and isinstance(body["details"], dict)
    assert "<html" not in resp.text.lower() and "Traceback" not in resp.text
    return body


def test_every_endpoint(live_server: GunicornServer) -> None:
    s = live_server
    assert s.get("/healthz").json() == {"status": "ok"}
    assert s.get("/readyz").json()["status"] == "ready"
    d = s.post("/v1/decisions", json=DISCLOSE_OK, headers={"Accept-Language": "fi"}).json()
    assert d["decision"] == "allow" and d["reasons"][0]["message"] == "Viranomaiselle saa luovuttaa."
    b = s.post("/v1/decisions/batch", json={"operations": [DISCLOSE_OK] * 3}).json()
    assert [x["decision"] for x in b["decisions"]] == ["allow"] * 3
    assert len({x["decision_id"] for x in b["decisions"]}) == 3
    pol = s.get("/v1/policies").json()
    assert pol["policy_version"] == d["policy_version"]
    r = s.post("/v1/policies/reload").json()
    assert r["policy_version"] == d["policy_version"] and r["changed"] is False
    ev = {"id": "e2e-1", "type": "consent.granted", "subject_id": "cust-1",
          "occurred_at": "2026-01-01T00:00:00Z", "data": {"purpose": "disclosure"}}
    assert s.post("/v1/events", json=ev).status_code == 201
    assert s.post("/v1/events", json=ev).status_code == 200
    assert s.get("/v1/subjects/cust-1").json()["consents"] == ["disclosure"]
    assert s.get("/v1/hooks/deliveries").status_code == 200
    consent = {"operation": "disclose", "recipient": {"country": "FI", "type": "third_party"}, "subject": {"id": "cust-1"}}
    assert s.post("/v1/decisions", json=consent).json()["decision"] == "allow"
    spec = s.get("/openapi.json").json()
    assert "/v1/decisions/batch" in spec["paths"]
    assert "kti_decisions_total" in s.get("/metrics").text



def test_as_of_decisions_through_gunicorn(live_server: GunicornServer) -> None:
    """A decision with an ``at`` in the past reads the facts as they were then (dated facts folded
    up to ``at``), through gunicorn's workers and the real database: the day before a consent it
    is a deny, the day after an allow, and the same question without ``at`` sees the consent."""
    s = live_server
    ev = {"id": "e2e-asof-1", "type": "consent.granted", "subject_id": "cust-asof",
          "occurred_at": "2026-01-10T12:00:00+02:00", "data": {"purpose": "disclosure"}}
    assert s.post("/v1/events", json=ev).status_code == 201
    ask = {"operation": "disclose", "recipient": {"country": "FI", "type": "third_party"},
           "subject": {"id": "cust-asof"}}
    got = {at: s.post("/v1/decisions", json=dict(ask, at=at)).json()["decision"]
           for at in ("2026-01-09T12:00:00+02:00", "2026-01-11T12:00:00+02:00")}
    assert got == {"2026-01-09T12:00:00+02:00": "deny", "2026-01-11T12:00:00+02:00": "allow"}
    assert s.post("/v1/decisions", json=ask).json()["decision"] == "allow"
    batch = s.post("/v1/decisions/batch", json={"operations": [
        dict(ask, at="2026-01-09T12:00:00+02:00"), dict(ask, at="2026-01-11T12:00:00+02:00")]}).json()
    assert [d["decision"] for d in batch["decisions"]] == ["deny", "allow"]

def test_every_error_class(live_server: GunicornServer) -> None:
    s = live_server
    assert_json_error(s.post("/v1/decisions", json={"operation": "process", "subject": {"id": "a"}}), 400, "bad_request")
    err = assert_json_error(s.post("/v1/decisions", json={**DISCLOSE_OK, "purpose": "x"}), 400, "unknown_vocabulary_id")
    assert err["details"]["field"] == "purpose" and "research" not in err["details"]["value"]
    err = assert_json_error(
        s.post("/v1/decisions/batch", json={"operations": [DISCLOSE_OK, {"operation": "fly"}]}), 400,
        "unknown_vocabulary_id",
    )
    assert err["details"]["index"] == 1
    assert_json_error(s.post("/v1/decisions", data=b"{bad", headers={"Content-Type": "application/json"}), 400, "bad_request")
    assert_json_error(s.post("/v1/decisions", data=b"<xml/>", headers={"Content-Type": "application/xml"}), 415, "unsupported_media_type")
    assert_json_error(s.post("/v1/decisions", data=b"operation=x"), 415, "unsupported_media_type")
    big = b'{"operation": "delete", "pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    assert_json_error(s.post("/v1/decisions", data=big, headers={"Content-Type": "application/json"}), 413, "payload_too_large")
    assert_json_error(s.get("/v1/nothing-here"), 404, "not_found")
    assert_json_error(s.get("/v1/subjects/nobody-known"), 404, "not_found")
    assert_json_error(s.request("PUT", "/v1/decisions", json={}), 405, "method_not_allowed")
    assert_json_error(s.get("/v1/policies/reload"), 405, "method_not_allowed")


def test_auth_roles(start_server: Any) -> None:
    s = start_server({"KTI_API_KEYS": "q1:query,i1:ingest,a1:admin"}, workers=1)
    assert_json_error(s.post("/v1/decisions", json=DISCLOSE_OK), 401, "unauthorized")
    assert_json_error(s.post("/v1/decisions", json=DISCLOSE_OK, key="nope"), 401, "unauthorized")
    assert_json_error(s.post("/v1/decisions", json=DISCLOSE_OK, key="i1"), 403, "forbidden")
    assert s.post("/v1/decisions", json=DISCLOSE_OK, key="q1").status_code == 200
    assert s.post("/v1/decisions", json=DISCLOSE_OK, headers={"X-API-Key": "q1"}).status_code == 200
    assert_json_error(s.post("/v1/policies/reload", key="q1"), 403, "forbidden")
    assert s.post("/v1/policies/reload", key="a1").status_code == 200
    ev = {"id": "e1", "type": "erasure.requested", "subject_id": "s", "occurred_at": "2026-01-01T00:00:00Z", "data": {}}
    assert_json_error(s.post("/v1/events", json=ev, key="q1"), 403, "forbidden")
    assert s.post("/v1/events", json=ev, key="i1").status_code == 201
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert s.get(path).status_code == 200


def _versions_by_pid(metrics_text: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for m in re.finditer(r'kti_policy_version_info\{([^}]*)\} ([0-9.e+-]+)', metrics_text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out.setdefault(labels["pid"], {})[labels["version"]] = float(m.group(2))
    return out


def test_reload_reaches_every_worker(start_server: Any) -> None:
    s = start_server(workers=2)
    v1 = s.get("/v1/policies").json()["policy_version"]
    f = s.policy_dir / "disclosure.yaml"
    f.write_text(f.read_text().replace("An authority may receive the data.", "Reloaded text."))
    reload = s.post("/v1/policies/reload").json()
    v2 = reload["policy_version"]
    assert v2 != v1 and reload["previous_version"] == v1
    reloaded_at = time.monotonic()
    late: list[tuple[float, str]] = []
    while time.monotonic() - reloaded_at < 4.0:
        # a fresh connection per request, so both workers take requests
        r = requests.post(s.url + "/v1/decisions", json=DISCLOSE_OK, timeout=10).json()
        if r["policy_version"] != v2:
            late.append((time.monotonic() - reloaded_at, r["policy_version"]))
    assert all(t < 2.0 for t, _ in late), late  # the check runs at most once a second
    versions = _versions_by_pid(requests.get(s.url + "/metrics", timeout=10).text)
    assert len(versions) == 2, versions  # two live workers
    for pid, by_version in versions.items():
        assert by_version.get(v2) == 1.0 and by_version.get(v1, 0.0) == 0.0, (pid, by_version)


def test_reload_failure_keeps_old_set_in_every_worker(start_server: Any) -> None:
    s = start_server(workers=2)
    v1 = s.get("/v1/policies").json()["policy_version"]
    (s.policy_dir / "bad.yaml").write_text("policy: bad\nrules:\n  - id: bad.rule\n    effect: perhaps\n")
    err = assert_json_error(s.post("/v1/policies/reload"), 422, "invalid_policies")
    assert any(e["file"].endswith("bad.yaml") and e["line"] > 0 for e in err["details"]["errors"])
    time.sleep(1.2)
    for _ in range(20):
        assert requests.post(s.url + "/v1/decisions", json=DISCLOSE_OK, timeout=10).json()["policy_version"] == v1


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} ([0-9.e+-]+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_metrics_aggregate_every_worker(start_server: Any) -> None:
    s = start_server(workers=2)
    n = 60
    for _ in range(n):
        requests.post(s.url + "/v1/decisions", json=DISCLOSE_OK, timeout=10)
    for _ in range(5):  # whichever worker answers, it counts them all
        text = requests.get(s.url + "/metrics", timeout=10).text
        assert _metric_sum(text, "kti_decisions_total", decision="allow", operation="disclose") == n
        assert _metric_sum(text, "kti_decision_request_seconds_count", kind="single") == n


def test_decision_log_has_no_clear_subject_id(start_server: Any) -> None:
    s = start_server(workers=2)
    ids = [f"clear-customer-{i:03d}" for i in range(30)]
    for sid in ids:
        requests.post(s.url + "/v1/decisions", json={**DISCLOSE_OK, "subject": {"id": sid, "consents": ["disclosure"]}}, timeout=10)
    s.post("/v1/decisions/batch", json={"operations": [{"operation": "delete", "subject": {"id": sid}} for sid in ids]})
    s.stop()
    text = s.decision_log.read_text()
    for sid in ids:
        assert sid not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert len(records) == 60
    keys = {r["request"]["subject"]["id"] for r in records}
    assert len(keys) == 30 and all(k.startswith("hs_") for k in keys)
    assert {"decision_id", "time", "request", "facts", "decision", "rules", "policy_version"} <= set(records[0])
    assert "disclosure" in records[0]["request"]["subject"]["consents"]


def test_access_log_has_no_clear_subject_id(start_server: Any, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    s = start_server({"KTI_ACCESS_LOG": str(access)}, workers=1)
    sid = "clear-customer-in-url-77"
    requests.post(s.url + "/v1/events", json={"id": "e-url-1", "type": "relationship.started", "subject_id": sid,
                                              "occurred_at": "2026-03-02T10:00:00+02:00", "data": {}}, timeout=10)
    assert requests.get(s.url + f"/v1/subjects/{sid}", timeout=10).status_code == 200
    assert requests.get(s.url + "/v1/subjects/nobody-known-88", timeout=10).status_code == 404
    s.stop()
    text = access.read_text() + s.log_text()
    assert "/v1/subjects/<redacted>" in text
    assert sid not in text and "nobody-known-88" not in text


def test_public_bind_without_keys_refuses_to_start(tmp_path: Path) -> None:
    done = run_gunicorn_expecting_failure(tmp_path, {}, f"0.0.0.0:{free_port()}")
    assert done.returncode != 0
    assert "KTI_API_KEYS" in done.stdout + done.stderr


def test_serve_command(tmp_path: Path) -> None:
    shutil.copytree(Path(__file__).parent.parent / "data" / "clean", tmp_path / "policies")
    env = {"PATH": str(Path(sys.executable).parent), "KTI_POLICY_DIR": str(tmp_path / "policies"),
           "KTI_INSTANCE_DIR": str(tmp_path / "instance"), "KTI_HOOKS_DIR": str(tmp_path)}
    exe = str(Path(sys.executable).parent / "kti-policy")
    refused = subprocess.run([exe, "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                             env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert refused.returncode != 0 and "KTI_API_KEYS" in refused.stderr
    bad = subprocess.run([exe, "serve", "--port", str(free_port())], env={**env, "KTI_HOOK_TIMEOUT": "soon"},
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "Error: KTI_HOOK_TIMEOUT must be a number, got 'soon'" in bad.stderr
    port = free_port()
    proc = subprocess.Popen([exe, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            pytest.fail("serve did not start")
        assert requests.post(f"http://127.0.0.1:{port}/v1/decisions", json=DISCLOSE_OK, timeout=5).json()["allowed"]
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode()
    assert "authentication is OFF" in out
