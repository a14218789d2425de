"""AuthZEN Authorization API 1.0 (CONTRACT section 9): the request shapes of the specification's own
examples (single evaluation, evaluations with defaults, the three semantics, the metadata document),
mapped onto CONTRACT 2 and answered like ``/v1/decisions``: same auth, log, metrics, fail-closed.

Precise cases run through Flask's test client; the end-to-end ones against a real gunicorn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from e2e.server import GunicornServer

AUTHORITY = {"type": "authority", "country": "FI"}
LEGAL = {"type": "legal_obligation", "reference": "Ulosottokaari 3:64"}
CALLER = {"type": "system", "id": "crm.kti.fi"}


def resource(sid: str = "c-4711", **properties: Any) -> dict[str, Any]:
    return {"type": "data_subject", "id": sid, "properties": {"data_categories": ["email"], **properties}}


def evaluation(context: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    body = {"subject": CALLER, "resource": resource(), "action": {"name": "disclose"},
            "context": {"recipient": AUTHORITY, "legal_basis": LEGAL} if context is None else context}
    body.update(over)
    return body


ALLOW_CTX = {"recipient": AUTHORITY, "legal_basis": LEGAL}
DENY_CTX = {"recipient": {"type": "third_party", "country": "FI"}}


def error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error", "message", "details"} and body["error"] == code
    return body


def test_single_evaluation_allow_and_deny(app_client: Any) -> None:
    r = app_client.post("/access/v1/evaluation", json=evaluation(),
                        headers={"X-Request-ID": "bfe9eb29-ab87"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "bfe9eb29-ab87"
    body = r.get_json()
    assert body["decision"] is True
    assert set(body["context"]) == {"decision_id", "reasons", "obligations", "policy_version"}
    assert [x["rule"] for x in body["context"]["reasons"]] == ["disclosure.authority"]
    deny = app_client.post("/access/v1/evaluation", json=evaluation(DENY_CTX),
                           headers={"Accept-Language": "fi"}).get_json()
    assert deny["decision"] is False
    assert [x["rule"] for x in deny["context"]["reasons"]] == ["disclosure.other"]
    same = app_client.post("/v1/decisions", headers={"Accept-Language": "fi"}, json={
        "operation": "disclose", "data_categories": ["email"], "subject": {"id": "c-4711"},
        **DENY_CTX}).get_json()
    assert deny["context"]["reasons"] == same["reasons"]  # the same decision, Finnish text too


def test_properties_are_inline_facts_and_action_fields(app_client: Any) -> None:
    # an inline objection (resource.properties) denies marketing (action.properties.purpose)
    body = evaluation({}, action={"name": "process", "properties": {"purpose": "direct_marketing"}},
                      resource=resource(objections=["direct_marketing"]))
    got = app_client.post("/access/v1/evaluation", json=body).get_json()
    assert got["decision"] is False
    assert [x["rule"] for x in got["context"]["reasons"]] == ["processing.objected_marketing"]
    body["resource"] = resource()
    assert app_client.post("/access/v1/evaluation", json=body).get_json()["decision"] is True
    # a subject request's obligations come back in the context
    req = evaluation({}, action={"name": "subject_request", "properties": {"request": {
        "type": "access", "received_at": "2027-01-31T10:00:00+02:00"}}})
    ctx = app_client.post("/access/v1/evaluation", json=req).get_json()["context"]
    assert {"type": "respond_by", "due": "2027-03-01"}.items() <= ctx["obligations"][0].items()


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"resource": {"type": "document", "id": "boxcarring.md"}}, 400, "bad_request", "resource.type"),
        ({"resource": resource(nickname="x")}, 400, "bad_request", "resource.properties.nickname"),
        ({"resource": resource(consents=["nope"])}, 400, "unknown_vocabulary_id",
         "resource.properties.consents[0]"),
        ({"resource": resource(data_categories="email")}, 400, "bad_request",
         "resource.properties.data_categories"),
        ({"resource": resource(id="c-2")}, 400, "bad_request", "resource.properties.id"),
        ({"action": {"name": "disclos"}}, 400, "unknown_vocabulary_id", "action.name"),
        ({"action": {"name": "disclose", "properties": {"recipient": AUTHORITY}}}, 400, "bad_request",
         "action.properties.recipient"),
        ({"action": {"name": "disclose", "properties": {"colour": "red"}}}, 400, "bad_request",
         "action.properties.colour"),
        ({"context": {"time": "1985-10-26T01:22-07:00"}}, 400, "bad_request", "context.time"),
        ({"context": {"recipient": {"type": "partner", "country": "FI"}}}, 400, "unknown_vocabulary_id",
         "context.recipient.type"),
        ({"context": {"recipient": {"country": "FI"}}}, 400, "bad_request", "context.recipient.type"),
        ({"subject": {"type": "user"}}, 400, "bad_request", "subject.id"),
        ({"page": {"next_token": ""}}, 400, "bad_request", "page"),
    ],
)
def test_bad_requests_name_the_authzen_field(app_client: Any, change: dict[str, Any], status: int,
                                            code: str, field: str) -> None:
    body = error(app_client.post("/access/v1/evaluation", json=evaluation(**change)), status, code)
    named = body["details"].get("field") or next(iter(body["details"]["errors"]))
    assert named == field and field in body["message"]


def test_missing_parts_and_bodies(app_client: Any) -> None:
    no_action = {k: v for k, v in evaluation().items() if k != "action"}
    body = error(app_client.post("/access/v1/evaluation", json=no_action), 400, "bad_request")
    assert "action" in body["details"]["errors"]
    error(app_client.post("/access/v1/evaluation", data="x", content_type="text/plain"), 415,
          "unsupported_media_type")
    error(app_client.post("/access/v1/evaluation", json=[evaluation()]), 400, "bad_request")


def test_evaluations_with_defaults_as_in_the_spec(app_client: Any) -> None:
    # top-level subject/context/action are defaults; an item's own key replaces the default whole
    body = {"subject": CALLER, "context": ALLOW_CTX, "action": {"name": "disclose"},
            "evaluations": [
                {"resource": resource("c-1")},
                {"resource": resource("c-2"), "context": DENY_CTX},
                {"resource": resource("c-3"), "action": {"name": "delete"}, "context": {}},
            ]}
    got = app_client.post("/access/v1/evaluations", json=body).get_json()
    assert [e["decision"] for e in got["evaluations"]] == [True, False, True]
    assert [e["context"]["reasons"][0]["rule"] for e in got["evaluations"]] == [
        "disclosure.authority", "disclosure.other", "deletion.always"]
    # no defaults at all: every item complete
    full = {"evaluations": [evaluation(), evaluation(DENY_CTX)]}
    assert [e["decision"] for e in app_client.post("/access/v1/evaluations", json=full)
            .get_json()["evaluations"]] == [True, False]


@pytest.mark.parametrize(
    ("semantic", "contexts", "expected"),
    [
        ("execute_all", [ALLOW_CTX, DENY_CTX, ALLOW_CTX], [True, False, True]),
        ("deny_on_first_deny", [ALLOW_CTX, DENY_CTX, ALLOW_CTX], [True, False]),
        ("permit_on_first_permit", [DENY_CTX, ALLOW_CTX, DENY_CTX], [False, True]),
        ("permit_on_first_permit", [DENY_CTX, DENY_CTX], [False, False]),
        (None, [ALLOW_CTX, DENY_CTX], [True, False]),
    ],
)
def test_evaluations_semantics(app_client: Any, app_config: dict[str, Any], semantic: str | None,
                               contexts: list[dict[str, Any]], expected: list[bool]) -> None:
    body: dict[str, Any] = {"subject": CALLER, "resource": resource(), "action": {"name": "disclose"},
                            "evaluations": [{"context": c} for c in contexts]}
    if semantic:
        body["options"] = {"evaluations_semantic": semantic, "another_option": "value"}
    got = app_client.post("/access/v1/evaluations", json=body).get_json()
    assert [e["decision"] for e in got["evaluations"]] == expected
    # only what was decided is logged
    lines = Path(app_config["KTI_DECISION_LOG"]).read_text().splitlines()
    assert len(lines) == len(expected)


def test_evaluations_errors(app_client: Any) -> None:
    base = {"subject": CALLER, "resource": resource(), "action": {"name": "disclose"}}
    bad_item = {**base, "evaluations": [{"context": ALLOW_CTX}, {"context": {"x": 1}}]}
    body = error(app_client.post("/access/v1/evaluations", json=bad_item), 400, "bad_request")
    assert body["details"]["index"] == 1 and "evaluations[1].context.x" in body["details"]["errors"]
    vocab = {**base, "evaluations": [{"context": ALLOW_CTX}, {"resource": resource(consents=["x"]), "context": ALLOW_CTX}]}
    body = error(app_client.post("/access/v1/evaluations", json=vocab), 400, "unknown_vocabulary_id")
    assert body["details"]["field"] == "evaluations[1].resource.properties.consents[0]"
    semantic = {**base, "options": {"evaluations_semantic": "first_one"}, "evaluations": []}
    body = error(app_client.post("/access/v1/evaluations", json=semantic), 400, "bad_request")
    assert "options.evaluations_semantic" in body["details"]["errors"]
    missing = {"subject": CALLER, "evaluations": [{"resource": resource()}]}
    body = error(app_client.post("/access/v1/evaluations", json=missing), 400, "bad_request")
    assert "evaluations[0].action" in body["details"]["errors"]


def test_evaluations_without_the_list_is_one_evaluation(app_client: Any) -> None:
    got = app_client.post("/access/v1/evaluations", json=evaluation()).get_json()
    assert got["decision"] is True and "evaluations" not in got
    empty = app_client.post("/access/v1/evaluations", json={**evaluation(), "evaluations": []})
    assert empty.get_json() == {"evaluations": []}


def test_evaluations_limit(app_config: dict[str, Any]) -> None:
    from kti_policy.api.app import create_app

    app = create_app({**app_config, "KTI_MAX_BATCH": 2})
    body = {**evaluation(), "evaluations": [{}, {}, {}]}
    error(app.test_client().post("/access/v1/evaluations", json=body), 400, "bad_request")
    app.extensions["kti"].close()


def test_store_failure_denies(app_client: Any) -> None:
    def broken(_sids: Any, **_: Any) -> Any:
        raise RuntimeError("database gone")

    app_client.application.extensions["kti"].store.facts_for_many = broken
    got = app_client.post("/access/v1/evaluation", json=evaluation()).get_json()
    assert got["decision"] is False
    assert [x["rule"] for x in got["context"]["reasons"]] == ["eval_error"]
    many = app_client.post("/access/v1/evaluations",
                           json={**evaluation(), "evaluations": [{}, {}]}).get_json()
    assert [e["decision"] for e in many["evaluations"]] == [False, False]


def test_configuration(app_client: Any, app_config: dict[str, Any]) -> None:
    from kti_policy.api.app import create_app

    # a public Host name: only with auth on (auth off answers loopback Host names only, issue 13)
    keyed = create_app({**app_config, "KTI_API_KEYS": "k1:query"})
    got = keyed.test_client().get("/.well-known/authzen-configuration", base_url="https://pdp.kti.fi")
    keyed.extensions["kti"].close()
    assert got.status_code == 200 and got.get_json() == {
        "policy_decision_point": "https://pdp.kti.fi",
        "access_evaluation_endpoint": "https://pdp.kti.fi/access/v1/evaluation",
        "access_evaluations_endpoint": "https://pdp.kti.fi/access/v1/evaluations",
    }

    app = create_app({**app_config, "KTI_PUBLIC_URL": "https://kti.example/pdp/"})
    doc = app.test_client().get("/.well-known/authzen-configuration").get_json()
    assert doc["access_evaluation_endpoint"] == "https://kti.example/pdp/access/v1/evaluation"
    app.extensions["kti"].close()


def test_mapping_follows_the_request_schema() -> None:
    from kti_policy.api.authzen import action_keys, authzen_field
    from kti_policy.decide.operation import OperationSchema

    # every top-level field of the decision request has exactly one place in AuthZEN
    top = set(OperationSchema().fields)
    assert {"purpose", "source", "request"} <= action_keys() < top
    assert authzen_field("subject.id") == "resource.id"
    assert authzen_field("subject") == "resource"
    assert authzen_field("subject.objections[1]") == "resource.properties.objections[1]"
    assert authzen_field("recipient.country") == "context.recipient.country"
    assert authzen_field("request.type") == "action.properties.request.type"


# -- against a real gunicorn ---------------------------------------------------------------------


def test_e2e_auth_log_metrics(start_server: Any) -> None:
    srv: GunicornServer = start_server({"KTI_API_KEYS": "q:query,i:ingest"}, workers=1)
    assert srv.post("/access/v1/evaluation", json=evaluation()).status_code == 401
    assert srv.post("/access/v1/evaluation", json=evaluation(), key="i").status_code == 403
    meta = srv.get("/.well-known/authzen-configuration")  # no key, like /openapi.json
    assert meta.status_code == 200
    assert meta.json()["access_evaluation_endpoint"] == srv.url + "/access/v1/evaluation"
    r = srv.post("/access/v1/evaluation", json=evaluation(), key="q",
                 headers={"X-Request-ID": "req-1"})
    assert r.status_code == 200 and r.json()["decision"] is True
    assert r.headers["X-Request-ID"] == "req-1"
    rs = srv.post("/access/v1/evaluations", key="q", json={
        "subject": CALLER, "resource": resource("c-9"), "action": {"name": "disclose"},
        "options": {"evaluations_semantic": "deny_on_first_deny"},
        "evaluations": [{"context": ALLOW_CTX}, {"context": DENY_CTX}, {"context": ALLOW_CTX}]})
    assert [e["decision"] for e in rs.json()["evaluations"]] == [True, False]
    lines = [json.loads(x) for x in srv.decision_log.read_text().splitlines()]
    assert len(lines) == 3 and all(x["caller"] == CALLER for x in lines)
    assert lines[0]["decision_id"] == r.json()["context"]["decision_id"]
    text = srv.decision_log.read_text()
    assert "c-4711" not in text and "c-9" not in text  # data subjects are pseudonymised
    metrics = srv.get("/metrics").text
    assert 'endpoint="/access/v1/evaluation"' in metrics
    counted = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
               for line in metrics.splitlines() if line.startswith("kti_decisions_total{")}
    assert counted == {'decision="allow",operation="disclose"': 2.0,
                       'decision="deny",operation="disclose"': 1.0}
    bad = srv.post("/access/v1/evaluation", key="q",
                   json=evaluation(resource={"type": "account", "id": "1"}))
    assert bad.status_code == 400 and bad.json()["details"]["errors"]["resource.type"]
