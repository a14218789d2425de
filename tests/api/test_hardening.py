"""Issue 13 (hardening), the items a Flask test client can show: hostile bytes, out-of-range times,
DNS rebinding, duplicate keys, a database that is down, the playground's budget,
file modes. The slow-client, silent-database and log items have their own files
(``test_slow_clients.py``, ``test_db_timeouts.py``, ``test_hardening_e2e.py``)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kti_policy.api.app import create_app

DISCLOSE = {
    "operation": "disclose",
    "data_categories": ["email"],
    "recipient": {"type": "authority", "country": "FI", "name": "Ulosottovirasto"},
    "legal_basis": {"type": "legal_obligation"},
    "subject": {"id": "customer-4711"},
}
EVENT = {
    "id": "ev-h-1",
    "type": "consent.granted",
    "subject_id": "customer-4711",
    "occurred_at": "2026-03-01T10:00:00+02:00",
    "data": {"purpose": "disclosure"},
}
SURROGATE = "\ud800"


def post_raw(client: Any, path: str, text: str, **kw: Any) -> Any:
    """Post JSON text as written (json.dumps escapes a lone surrogate as \\ud800, valid JSON)."""
    return client.post(path, data=text.encode(), content_type="application/json", **kw)


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == code, body
    return body


# -- item 2: lone UTF-16 surrogates ---------------------------------------------------------------


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    node[last] = value
    return out


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/v1/decisions", _with(DISCLOSE, "subject.id", "a" + SURROGATE), "subject.id"),
        ("/v1/decisions", _with(DISCLOSE, "recipient.name", SURROGATE), "recipient.name"),
        ("/v1/decisions", _with(DISCLOSE, "operation", "x" + SURROGATE), "operation"),  # echoed id
        ("/v1/decisions/batch", {"operations": [DISCLOSE, _with(DISCLOSE, "subject.id", SURROGATE)]},
         "operations[1].subject.id"),
        ("/v1/events", _with(EVENT, "subject_id", SURROGATE), "subject_id"),
        ("/v1/events/batch", {"events": [_with(EVENT, "data.purpose", SURROGATE)]},
         "events[0].data.purpose"),
        ("/v1/playground/evaluate", {"files": {"disclosure.yaml": "policy: x" + SURROGATE},
                                     "operation": DISCLOSE}, "files.disclosure.yaml"),
        ("/v1/decisions", {**DISCLOSE, "purpose" + SURROGATE: "x"}, "body"),
    ],
)
def test_lone_surrogate_is_a_400_naming_the_field(app_client: Any, url: str, body: Any, field: str) -> None:
    err = assert_error(post_raw(app_client, url, json.dumps(body)), 400, "bad_request")
    assert err["details"]["field"] == field
    assert field in err["message"]


def test_surrogate_escaped_in_playground_yaml_is_a_parse_error(app_client: Any) -> None:
    # the JSON is clean text; the YAML inside it spells the surrogate as a YAML escape
    text = (Path(__file__).parent.parent / "data" / "clean" / "disclosure.yaml").read_text()
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("title:"))
    lines[at] = 'title: {fi: "Luovutukset \\ud800", en: Disclosures}'
    text = "\n".join(lines) + "\n"
    resp = app_client.post("/v1/playground/evaluate", json={"files": {"disclosure.yaml": text}, "operation": DISCLOSE})
    err = assert_error(resp, 422, "invalid_policies")
    assert any(e["code"] == "policy_parse_error" and e["file"] == "disclosure.yaml" and e["line"] == at + 1
               for e in err["details"]["errors"]), err


def test_surrogate_percent_escapes_in_the_path_are_no_500(app_client: Any) -> None:
    resp = app_client.get("/v1/subjects/%ED%A0%80abc")
    assert resp.status_code == 404
    resp = app_client.get("/v1/hooks/deliveries?status=%ED%A0%80")
    assert resp.status_code in (200, 400)


# -- item 3: out-of-range times -------------------------------------------------------------------


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "1800-01-01T00:00:00Z"])
def test_out_of_range_times_are_400(app_client: Any, when: str) -> None:
    err = assert_error(app_client.post("/v1/events", json={**EVENT, "occurred_at": when}), 400, "bad_request")
    assert "occurred_at" in err["message"]
    err = assert_error(app_client.post("/v1/decisions", json={**DISCLOSE, "at": when}), 400, "bad_request")
    assert "at" in err["details"]["errors"]
    access = {"operation": "subject_request", "subject": {"id": "c-1"},
              "request": {"type": "access", "received_at": when}}
    err = assert_error(app_client.post("/v1/decisions", json=access), 400, "bad_request")
    assert "request" in err["details"]["errors"] and "received_at" in err["details"]["errors"]["request"]


# -- item 9: DNS rebinding against the auth-off server --------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8080", "localhost", "LOCALHOST:9", "[::1]", "[::1]:8080"])
def test_loopback_host_names_are_answered_when_auth_is_off(app_client: Any, host: str) -> None:
    assert app_client.get("/healthz", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8080", "127.0.0.1.nip.io", "10.0.0.1"])
def test_other_host_names_are_421_when_auth_is_off(app_client: Any, host: str) -> None:
    resp = app_client.post("/v1/decisions", json=DISCLOSE, headers={"Host": host})
    assert_error(resp, 421, "misdirected_request")


def test_any_host_is_answered_when_auth_is_on(app_config: dict[str, Any]) -> None:
    app = create_app({**app_config, "KTI_API_KEYS": "k1:query"})
    try:
        resp = app.test_client().post("/v1/decisions", json=DISCLOSE, headers={"Host": "kti.internal", "X-API-Key": "k1"})
        assert resp.status_code == 200
    finally:
        app.extensions["kti"].close()


# -- item 12: duplicate JSON keys -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "text", "field"),
    [
        ("/v1/decisions", '{"operation": "delete", "operation": "disclose", "subject": {"id": "c-1"}}', "operation"),
        ("/v1/decisions", '{"operation": "delete", "subject": {"id": "c-1", "id": "c-2"}}', "subject.id"),
        ("/v1/decisions", '{"operation": "delete", "subject": {"id": "c-1"}, "subject": {"id": "c-2"}}', "subject"),
        ("/v1/decisions/batch", '{"operations": [{"operation": "delete", "subject": {"id": "a"}},'
                                ' {"operation": "delete", "subject": {"id": "b"}, "operation": "collect"}]}',
         "operations[1].operation"),
        ("/v1/events", json.dumps(EVENT)[:-1] + ', "subject_id": "someone-else"}', "subject_id"),
    ],
)
def test_duplicate_keys_are_400_naming_the_key(app_client: Any, url: str, text: str, field: str) -> None:
    err = assert_error(post_raw(app_client, url, text), 400, "bad_request")
    assert err["details"]["field"] == field
    assert "more than once" in err["message"]


# -- item 6: a database outage ---------------------------------------------------------------------


def test_database_outage_is_503_with_retry_after(app_config: dict[str, Any], caplog: Any) -> None:
    import sqlalchemy as sa

    app = create_app(app_config)
    client = app.test_client()
    store = app.extensions["kti"].store
    try:
        assert client.post("/v1/events", json=EVENT).status_code == 201
        # the database goes away: nothing listens where the store now connects
        store.engine.dispose()
        store.engine = sa.create_engine("postgresql+psycopg://kti@127.0.0.1:9/kti", connect_args={"connect_timeout": 2})
        caplog.clear()
        for resp in (
            client.post("/v1/events", json={**EVENT, "id": "ev-h-2"}),
            client.post("/v1/events/batch", json={"events": [{**EVENT, "id": "ev-h-3"}]}),
            client.get("/v1/subjects/customer-4711"),
        ):
            assert_error(resp, 503, "service_unavailable")
            assert resp.headers["Retry-After"].isdigit()
        assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records]
        # a decision still fails closed (deny, not 503)
        resp = client.post("/v1/decisions", json=DISCLOSE)
        assert resp.status_code == 200 and resp.get_json()["decision"] == "deny"
    finally:
        app.extensions["kti"].close()


# -- item 10: file modes ---------------------------------------------------------------------------


def test_instance_folder_and_sqlite_file_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a usual umask: files 0644, folders 0755 unless created private
    try:
        inst = tmp_path / "inst"
        config = {
            "KTI_POLICY_DIR": str(Path(__file__).parent.parent / "data" / "clean"),
            "KTI_INSTANCE_DIR": str(inst),
            "KTI_HOOKS_DIR": str(tmp_path / "hooks"),
        }
        app = create_app(config)
        try:
            assert app.test_client().post("/v1/events", json=EVENT).status_code == 201
        finally:
            app.extensions["kti"].close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(inst.stat().st_mode) == 0o700
    files = [p for p in inst.iterdir() if p.is_file()]
    assert any(p.name.endswith(".sqlite3") for p in files), files
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))


def test_existing_open_instance_folder_is_tightened(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    inst.mkdir(mode=0o755)
    os.chmod(inst, 0o755)
    db = inst / "kti.sqlite3"
    db.touch()
    os.chmod(db, 0o644)
    config = {
        "KTI_POLICY_DIR": str(Path(__file__).parent.parent / "data" / "clean"),
        "KTI_INSTANCE_DIR": str(inst),
        "KTI_HOOKS_DIR": str(tmp_path / "hooks"),
    }
    app = create_app(config)
    app.extensions["kti"].close()
    assert stat.S_IMODE(inst.stat().st_mode) == 0o700
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


# -- item 8: the playground's budget ----------------------------------------------------------------


def _rules_file(prefix: str, n: int) -> str:
    rule = """  - id: {p}.r{i}
    effect: forbid
    when: {{operation: delete, subject.relationship: ended}}
    reason: {{fi: "Poistetaan kun asiakkuus on päättynyt, sääntö {i}.", en: "Deleted when the relationship has ended, rule {i}."}}
"""
    head = f'policy: {prefix}\ntitle: {{fi: x, en: x}}\nsource: "§1"\nrules:\n'
    return head + "".join(rule.format(p=prefix, i=i) for i in range(n))


def test_playground_refuses_work_over_its_budget_quickly(app_client: Any) -> None:
    import time

    # the report's attack: 64 files of 16 KB (16 s of CPU before)
    files = {f"p{i}.yaml": _rules_file(f"p{i}", 80)[: 16 * 1024] for i in range(64)}
    for url, extra in (("/v1/playground/evaluate", {"operation": DISCLOSE}), ("/v1/playground/test", {})):
        t0 = time.process_time()
        err = assert_error(app_client.post(url, json={"files": files, **extra}), 413, "too_costly")
        assert err["details"]["field"] == "files"
        assert time.process_time() - t0 < 1.0


def test_playground_test_budget_of_rules_times_cases(app_client: Any, monkeypatch: Any) -> None:
    from kti_policy.api import ui

    files = {"many.yaml": _rules_file("many", 40)}
    assert app_client.post("/v1/playground/test", json={"files": files}).status_code == 200
    monkeypatch.setattr(ui, "BUDGET_RULE_CASES", 10)
    err = assert_error(app_client.post("/v1/playground/test", json={"files": files}), 413, "too_costly")
    assert "rules x" in err["message"]


def test_playground_busy_is_503_with_retry_after(app_client: Any, monkeypatch: Any) -> None:
    from kti_policy.api import ui

    monkeypatch.setattr(ui, "BUSY_WAIT_SECONDS", 0.1)
    for _ in range(ui.PLAYGROUND_SLOTS):
        assert ui._slots.acquire(timeout=1)
    try:
        body = {"files": {"x.yaml": _rules_file("x", 1)}, "operation": DISCLOSE}
        resp = app_client.post("/v1/playground/evaluate", json=body)
        assert_error(resp, 503, "playground_busy")
        assert resp.headers["Retry-After"]
    finally:
        for _ in range(ui.PLAYGROUND_SLOTS):
            ui._slots.release()
    assert app_client.post("/v1/playground/evaluate", json=body).status_code in (200, 422)


# -- item 1, the set-up README asks for on a public bind --------------------------------------------


def test_compose_puts_nginx_with_timeouts_in_front() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "ports" not in services["kti"], "only the proxy may publish a port"
    assert services["nginx"]["ports"] and "deploy/nginx.conf" in str(services["nginx"]["volumes"])
    conf = (root / "deploy" / "nginx.conf").read_text()
    for directive in ("client_header_timeout", "client_body_timeout", "limit_conn ",
                      "proxy_request_buffering on", "proxy_pass http://kti"):
        assert directive in conf, directive
    gconf = (root / "gunicorn.conf.py").read_text()
    assert 'os.environ.get("KTI_WORKER_CLASS", "gevent")' in gconf
