"""The decision service through Flask's test client: errors, auth, languages, fail-closed, reload.

The same behaviours are checked against a real gunicorn in ``test_api_e2e.py``; these are the fast,
precise ones (injected faults, exact bodies).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kti_policy.api.app import create_app
from kti_policy.config import check_auth_for_binds, is_loopback_host, load_config
from kti_policy.errors import ConfigError, PolicyErrors

DISCLOSE_OK = {
    "operation": "disclose",
    "data_categories": ["email"],
    "recipient": {"type": "authority", "country": "FI"},
    "legal_basis": {"type": "legal_obligation", "reference": "Ulosottokaari 3:64"},
    "subject": {"id": "customer-4711"},
}


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == {"error", "message", "details"}
    assert body["error"] == code
    return body


# -- decisions --------------------------------------------------------------------------------


def test_decision_allow_and_contract_fields(app_client: Any) -> None:
    resp = app_client.post("/v1/decisions", json=DISCLOSE_OK)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["decision"] == "allow" and body["allowed"] is True
    assert [r["rule"] for r in body["reasons"]] == ["disclosure.authority"]
    assert {"decision_id", "reasons", "obligations", "policy_version", "evaluated_at"} <= set(body)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, "en"), ("fi", "fi"), ("fi-FI,fi;q=0.9,en;q=0.5", "fi"), ("sv, en;q=0.1", "en"), ("de", "en")],
)
def test_accept_language(app_client: Any, header: str | None, expected: str) -> None:
    headers = {"Accept-Language": header} if header else {}
    body = app_client.post("/v1/decisions", json=DISCLOSE_OK, headers=headers).get_json()
    msg = body["reasons"][0]["message"]
    assert msg == ("Viranomaiselle saa luovuttaa." if expected == "fi" else "An authority may receive the data.")


def test_recorded_facts_apply_and_inline_cannot_remove_them(app_client: Any) -> None:
    state = app_client.application.extensions["kti"]
    from kti_policy.errors import RequestError  # noqa: F401  (vocabulary is loaded)

    vocab = {k: set(state.policy_set().vocabulary.ids(k)) for k in ("objection_scope", "consent_purpose")}
    assert "direct_marketing" in vocab["objection_scope"]
    resp = app_client.post(
        "/v1/events",
        json={"id": "ev-1", "type": "objection.registered", "subject_id": "c-9",
              "occurred_at": "2026-01-01T10:00:00+02:00", "data": {"scope": "direct_marketing"}},
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    op = {"operation": "process", "purpose": "direct_marketing", "subject": {"id": "c-9", "objections": []}}
    body = app_client.post("/v1/decisions", json=op).get_json()
    assert body["decision"] == "deny"
    assert "processing.objected_marketing" in [r["rule"] for r in body["reasons"]]


def test_batch_in_order_and_bad_item_names_index(app_client: Any) -> None:
    ops = [DISCLOSE_OK, {"operation": "delete", "subject": {"id": "x"}}, {"operation": "retain", "subject": {"id": "y"}}]
    body = app_client.post("/v1/decisions/batch", json={"operations": ops}).get_json()
    assert [d["decision"] for d in body["decisions"]] == ["allow", "allow", "deny"]

    bad = app_client.post("/v1/decisions/batch", json={"operations": [DISCLOSE_OK, {**DISCLOSE_OK, "purpose": "nope"}]})
    err = assert_error(bad, 400, "unknown_vocabulary_id")
    assert err["details"]["index"] == 1
    assert err["details"]["value"] == "nope" and "customer_relationship" in err["details"]["known"]

    shape = app_client.post("/v1/decisions/batch", json={"operations": [DISCLOSE_OK, DISCLOSE_OK, {"operation": 5}]})
    err = assert_error(shape, 400, "bad_request")
    assert err["details"]["index"] == 2 and "operations[2].operation" in err["details"]["errors"]


def test_a_batch_is_decided_at_one_instant(app_client: Any) -> None:
    """One facts read, one policy set, one instant: every decision of a batch shows the same
    evaluated_at, and the next request a later one."""
    before = datetime.now(UTC)
    ops = [{"operation": "delete", "subject": {"id": f"s{i}"}} for i in range(5)] + [DISCLOSE_OK]
    first = app_client.post("/v1/decisions/batch", json={"operations": ops}).get_json()["decisions"]
    second = app_client.post("/v1/decisions/batch", json={"operations": ops}).get_json()["decisions"]
    (one,) = {d["evaluated_at"] for d in first}
    (two,) = {d["evaluated_at"] for d in second}
    assert before <= datetime.fromisoformat(one) < datetime.fromisoformat(two) <= datetime.now(UTC)


@pytest.mark.parametrize(
    "body",
    [{}, {"operations": "x"}, {"operations": [], "extra": 1}, {"operations": [{}] * 1001}],
)
def test_batch_envelope_errors(app_client: Any, body: Any) -> None:
    assert_error(app_client.post("/v1/decisions/batch", json=body), 400, "bad_request")


def test_empty_batch_and_full_batch(app_client: Any) -> None:
    assert app_client.post("/v1/decisions/batch", json={"operations": []}).get_json() == {"decisions": []}
    ops = [{"operation": "delete", "subject": {"id": f"s{i}"}} for i in range(1000)]
    body = app_client.post("/v1/decisions/batch", json={"operations": ops}).get_json()
    assert len(body["decisions"]) == 1000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operation": "disclose"}, "subject"),
        ({"operation": "process", "subject": {"id": "a"}}, "purpose"),
        ({"operation": "delete", "subject": {"id": "a"}, "bogus": 1}, "bogus"),
        ({"operation": "delete", "subject": {"id": ""}}, "subject"),
        ({"operation": "delete", "subject": {"id": "a"}, "at": "yesterday"}, "at"),
    ],
)
def test_bad_body_names_the_field(app_client: Any, body: dict[str, Any], field: str) -> None:
    err = assert_error(app_client.post("/v1/decisions", json=body), 400, "bad_request")
    assert field in err["details"]["errors"]


def test_unknown_vocabulary_id(app_client: Any) -> None:
    body = {**DISCLOSE_OK, "data_categories": ["email", "shoe_size"]}
    err = assert_error(app_client.post("/v1/decisions", json=body), 400, "unknown_vocabulary_id")
    assert err["details"]["field"] == "data_categories[1]"
    assert err["details"]["value"] == "shoe_size"
    assert "email" in err["details"]["known"]


# -- HTTP error classes ----------------------------------------------------------------------


def test_not_json_is_415(app_client: Any) -> None:
    assert_error(app_client.post("/v1/decisions", data="operation=x"), 415, "unsupported_media_type")
    assert_error(
        app_client.post("/v1/decisions", data="{}", content_type="text/plain"), 415, "unsupported_media_type"
    )


@pytest.mark.parametrize("raw", ["{", "[1]", "null", '"x"', "[" * 100000, b"\xff\xfe{"])
def test_malformed_json_is_400(app_client: Any, raw: str | bytes) -> None:
    assert_error(app_client.post("/v1/decisions", data=raw, content_type="application/json"), 400, "bad_request")


def test_oversized_is_413(app_config: dict[str, Any]) -> None:
    app = create_app({**app_config, "KTI_MAX_BODY_BYTES": 1000})
    client = app.test_client()
    big = json.dumps({**DISCLOSE_OK, "recipient": {"country": "FI", "type": "authority", "name": "x" * 2000}})
    assert_error(client.post("/v1/decisions", data=big, content_type="application/json"), 413, "payload_too_large")


def test_404_and_405_are_json(app_client: Any) -> None:
    assert_error(app_client.get("/nope"), 404, "not_found")
    err = assert_error(app_client.get("/v1/decisions"), 405, "method_not_allowed")
    assert "POST" in err["details"]["allowed_methods"]
    assert_error(app_client.delete("/v1/policies"), 405, "method_not_allowed")


def test_unexpected_exception_is_generic_500(app_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    state = app_client.application.extensions["kti"]

    def boom() -> None:
        raise RuntimeError("secret-internal-detail")

    state.store.ping = boom  # readyz handles it ...
    assert app_client.get("/readyz").status_code == 503
    state.policy_set = boom  # ... GET /v1/policies does not
    resp = app_client.get("/v1/policies")
    assert_error(resp, 500, "internal_error")
    assert "secret-internal-detail" not in resp.get_data(as_text=True)
    assert "Traceback" not in resp.get_data(as_text=True)
    assert "secret-internal-detail" in caplog.text


# -- fail closed ----------------------------------------------------------------------------


def test_store_failure_denies(app_client: Any) -> None:
    state = app_client.application.extensions["kti"]

    def broken(_sids: Any, **_: Any) -> Any:
        raise OSError("database is gone")

    state.store.facts_for_many = broken  # what a single decision reads through, too
    body = app_client.post("/v1/decisions", json=DISCLOSE_OK).get_json()
    assert body["decision"] == "deny" and body["allowed"] is False
    assert body["reasons"][0]["rule"] == "eval_error"


def test_store_failure_denies_a_whole_batch(app_client: Any) -> None:
    state = app_client.application.extensions["kti"]

    def broken(_sids: Any, **_: Any) -> Any:
        raise OSError("database is gone")

    state.store.facts_for_many = broken
    other = {**DISCLOSE_OK, "subject": {"id": "customer-9"}}
    anonymous = {"operation": "store_cookie", "cookie": {"kind": "strictly_necessary"}, "data_categories": []}
    body = app_client.post("/v1/decisions/batch", json={"operations": [DISCLOSE_OK, other, anonymous]})
    assert body.status_code == 200, body.get_data(as_text=True)
    decisions = body.get_json()["decisions"]
    assert [d["decision"] for d in decisions[:2]] == ["deny", "deny"]
    assert all(d["reasons"][0]["rule"] == "eval_error" for d in decisions[:2])
    # an operation that names no subject needs no stored facts and is still decided on its merits
    assert decisions[2]["reasons"][0]["rule"] != "eval_error"
    assert len({d["evaluated_at"] for d in decisions}) == 1  # failed or not, one instant per batch


def test_each_subject_is_pseudonymised_once_per_request(app_client: Any) -> None:
    """The facts read and the decision log share one keyed hash per subject (about 1 us each)."""
    state = app_client.application.extensions["kti"]
    pseudonymizer = state.store.pseudonymizer
    real = pseudonymizer.subject_key
    hashed: list[str] = []

    def counting(clear: str) -> str:
        hashed.append(clear)
        return real(clear)

    pseudonymizer.subject_key = counting
    ops = [{**DISCLOSE_OK, "subject": {"id": s}} for s in ("customer-a", "customer-b", "customer-a")]
    assert app_client.post("/v1/decisions/batch", json={"operations": ops}).status_code == 200
    assert sorted(hashed) == ["customer-a", "customer-b"]
    hashed.clear()
    assert app_client.post("/v1/decisions", json=ops[0]).status_code == 200
    assert hashed == ["customer-a"]


def test_batch_reads_each_subjects_own_facts(app_client: Any) -> None:
    """One store read for the batch, yet every decision sees its own subject's facts."""
    state = app_client.application.extensions["kti"]
    event = {
        "id": "ev-obj-1",
        "type": "objection.registered",
        "subject_id": "customer-obj",
        "occurred_at": "2026-03-01T10:00:00Z",
        "data": {"scope": "direct_marketing"},
    }
    state.store.record_events([event])
    calls: list[list[str]] = []
    real = state.store.facts_for_many

    def counting(sids: Any, **kwargs: Any) -> Any:
        calls.append(list(sids))
        return real(sids, **kwargs)

    state.store.facts_for_many = counting
    market = {"operation": "process", "purpose": "direct_marketing", "data_categories": ["email"]}
    ops = [{**market, "subject": {"id": s}} for s in ("customer-obj", "customer-free", "customer-obj")]
    decisions = app_client.post("/v1/decisions/batch", json={"operations": ops}).get_json()["decisions"]
    assert [d["decision"] for d in decisions] == ["deny", "allow", "deny"]
    assert len(calls) == 1


def test_decider_exception_denies(app_client: Any) -> None:
    state = app_client.application.extensions["kti"]
    decider = state.decider()

    def broken(*_a: Any, **_k: Any) -> Any:
        raise ValueError("engine exploded")

    decider.decide = broken
    body = app_client.post("/v1/decisions/batch", json={"operations": [DISCLOSE_OK]}).get_json()
    assert body["decisions"][0]["decision"] == "deny"
    assert body["decisions"][0]["reasons"][0]["rule"] == "eval_error"


def test_engine_fault_inside_decide_denies(app_client: Any) -> None:
    decider = app_client.application.extensions["kti"].decider()

    def broken(_ctx: Any) -> Any:
        raise RuntimeError("durable fault")

    decider.match = broken
    body = app_client.post("/v1/decisions", json=DISCLOSE_OK).get_json()
    assert body["decision"] == "deny" and body["reasons"][0]["rule"] == "eval_error"


# -- auth -----------------------------------------------------------------------------------

KEYS = "qkey:query,ikey:ingest,akey:admin,both:query+ingest"


@pytest.fixture
def auth_client(app_config: dict[str, Any]) -> Any:
    return create_app({**app_config, "KTI_API_KEYS": KEYS}).test_client()


@pytest.mark.parametrize(
    ("method", "path", "role", "body"),
    [
        ("POST", "/v1/decisions", "query", DISCLOSE_OK),
        ("POST", "/v1/decisions/batch", "query", {"operations": [DISCLOSE_OK]}),
        ("GET", "/v1/policies", "query", None),
        ("POST", "/v1/policies/reload", "admin", None),
        ("GET", "/v1/subjects/nobody", "query", None),
    ],
)
def test_roles(auth_client: Any, method: str, path: str, role: str, body: Any) -> None:
    def call(headers: dict[str, str]) -> Any:
        return auth_client.open(path, method=method, json=body, headers=headers)

    assert_error(call({}), 401, "unauthorized")
    assert_error(call({"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert_error(call({"Authorization": "Basic qkey"}), 401, "unauthorized")
    wrong = "ikey" if role == "query" else "qkey"
    assert_error(call({"Authorization": f"Bearer {wrong}"}), 403, "forbidden")
    right = {"query": "qkey", "admin": "akey"}[role]
    for headers in ({"Authorization": f"Bearer {right}"}, {"X-API-Key": right}, {"Authorization": "Bearer akey"}):
        assert call(headers).status_code in (200, 404), headers


def test_open_endpoints_need_no_key(auth_client: Any) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert auth_client.get(path).status_code == 200, path


def test_no_keys_serves_only_loopback_clients(app_client: Any) -> None:
    remote = app_client.post("/v1/decisions", json=DISCLOSE_OK, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert_error(remote, 403, "forbidden")
    local6 = app_client.post("/v1/decisions", json=DISCLOSE_OK, environ_base={"REMOTE_ADDR": "::1"})
    assert local6.status_code == 200


def test_bind_checks() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("") and not is_loopback_host("10.0.0.1")
    assert check_auth_for_binds(["127.0.0.1:8080", "[::1]:8080", "unix:/tmp/s"], None)
    for bind in ("0.0.0.0:8080", "[::]:8080", "10.0.0.1:80"):
        with pytest.raises(ConfigError):
            check_auth_for_binds([bind], "")
    assert check_auth_for_binds(["0.0.0.0:8080"], "k:query") == []
    with pytest.raises(ConfigError):
        check_auth_for_binds(["127.0.0.1:1"], "k:superuser")


def test_config_reads_env_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KTI_POLICY_DIR", "/from/env")
    assert load_config(None)["KTI_POLICY_DIR"] == "/from/env"
    assert load_config({})["KTI_POLICY_DIR"] == "./policies"
    with pytest.raises(ConfigError):
        load_config({"KTI_MAX_BODY_BYTES": "lots"})


# -- policies and reload ---------------------------------------------------------------------


def test_get_policies(app_client: Any) -> None:
    body = app_client.get("/v1/policies").get_json()
    assert body["policy_version"]
    assert "disclosure.authority" in body["rule_ids"]
    assert "operation" in body["vocabulary"]


def test_reload_keeps_old_set_on_error(app_config: dict[str, Any], tmp_path: Path) -> None:
    pol = tmp_path / "pol"
    shutil.copytree(app_config["KTI_POLICY_DIR"], pol)
    client = create_app({**app_config, "KTI_POLICY_DIR": str(pol)}).test_client()
    v1 = client.get("/v1/policies").get_json()["policy_version"]

    (pol / "broken.yaml").write_text("policy: broken\nrules:\n  - id: x\n    effect: maybe\n")
    (pol / "worse.yaml").write_text("policy: [unclosed\n")
    resp = client.post("/v1/policies/reload")
    err = assert_error(resp, 422, "invalid_policies")
    files = {e["file"] for e in err["details"]["errors"]}
    assert any("broken.yaml" in f for f in files) and any("worse.yaml" in f for f in files)
    assert all(e["line"] >= 1 for e in err["details"]["errors"])
    assert all(":" in m for m in err["details"]["messages"])
    assert client.get("/v1/policies").get_json()["policy_version"] == v1
    assert client.post("/v1/decisions", json=DISCLOSE_OK).status_code == 200

    (pol / "broken.yaml").unlink()
    (pol / "worse.yaml").unlink()
    text = (pol / "disclosure.yaml").read_text().replace("An authority may receive the data.", "Changed.")
    (pol / "disclosure.yaml").write_text(text)
    ok = client.post("/v1/policies/reload").get_json()
    assert ok["changed"] is True and ok["previous_version"] == v1 and ok["policy_version"] != v1
    assert client.post("/v1/decisions", json=DISCLOSE_OK).get_json()["reasons"][0]["message"] == "Changed."


def test_broken_policies_refuse_to_start(app_config: dict[str, Any], tmp_path: Path) -> None:
    pol = tmp_path / "empty"
    pol.mkdir()
    (pol / "vocabulary.yaml").write_text("vocabulary: [\n")
    with pytest.raises(PolicyErrors):
        create_app({**app_config, "KTI_POLICY_DIR": str(pol)})


# -- ops ------------------------------------------------------------------------------------


def test_health_ready_metrics(app_client: Any) -> None:
    assert app_client.get("/healthz").get_json() == {"status": "ok"}
    ready = app_client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["checks"] == {"policies": "ok", "database": "ok"}
    app_client.post("/v1/decisions", json=DISCLOSE_OK)
    text = app_client.get("/metrics").get_data(as_text=True)
    assert 'kti_decisions_total{decision="allow",operation="disclose"}' in text
    assert "kti_decision_request_seconds_bucket" in text
    assert "kti_policy_version_info" in text


def test_openapi_is_generated_and_covers_every_route(app_client: Any) -> None:
    spec = app_client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    app = app_client.application
    routes = {r.rule.replace("<", "{").replace(">", "}").replace("{int:", "{").replace("{path:", "{")
              for r in app.url_map.iter_rules() if r.endpoint != "static"}
    assert routes == set(spec["paths"])
    op = spec["paths"]["/v1/decisions"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Operation"}
    assert set(op["responses"]) >= {"200", "400", "401", "403", "413", "415"}
    schemas = spec["components"]["schemas"]
    assert "operation" in schemas["Operation"]["properties"] and "operation" in schemas["Operation"]["required"]
    assert schemas["BatchRequest"]["properties"]["operations"]["maxItems"] == 1000
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "422" in spec["paths"]["/v1/policies/reload"]["post"]["responses"]


def test_openapi_validates_as_openapi3(app_client: Any) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(app_client.get("/openapi.json").get_json())


def _too_complex_rule() -> str:
    """A rule no split brings under durable-rules' 32 expressions: an all of 16 four-way anys."""
    codes = [a + b for a in "ABCDEFGH" for b in "ABCDE"]
    groups = "\n".join(
        f"        - any: [{{recipient.country: {codes[2 * i]}}}, {{purpose: customer_relationship}}, "
        f"{{legal_basis.type: legal_obligation}}, {{recipient.country: {codes[2 * i + 1]}}}]"
        for i in range(16)
    )
    return ("policy: big\ntitle: {fi: x, en: x}\nsource: \"§1\"\nrules:\n  - id: big.too-complex\n"
            f"    effect: forbid\n    when:\n      all:\n{groups}\n    reason: {{fi: x, en: x}}\n")


def test_reload_refuses_a_rule_too_complex_for_the_engine(app_config: dict[str, Any], tmp_path: Path) -> None:
    pol = tmp_path / "pol"
    shutil.copytree(app_config["KTI_POLICY_DIR"], pol)
    app = create_app({**app_config, "KTI_POLICY_DIR": str(pol)})
    client = app.test_client()
    v1 = client.get("/v1/policies").get_json()["policy_version"]
    (pol / "big.yaml").write_text(_too_complex_rule(), encoding="utf-8")
    err = assert_error(client.post("/v1/policies/reload"), 422, "invalid_policies")
    [problem] = err["details"]["errors"]
    assert problem["code"] == "engine_limit" and problem["file"].endswith("big.yaml") and problem["line"] == 5
    assert client.get("/v1/policies").get_json()["policy_version"] == v1
    assert client.post("/v1/decisions", json=DISCLOSE_OK).get_json()["decision"] == "allow"
    app.extensions["kti"].close()
