"""The decision API with time: as-of decisions over recorded events, duration rules, v2 fields' 400s,
legal citations in reasons and the subject view's dates (Flask test client, SQLite)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kti_policy.api.app import create_app

CLEAN = Path(__file__).parent.parent / "data" / "clean"
TIMED = """\
policy: timed
title: {fi: Aika, en: Time}
source: "§8"
rules:
  - id: timed.soft-opt-in
    effect: permit
    law: [SVPL 200(2)]
    when:
      operation: record_call
      any:
        - subject.relationship: active
        - subject.relationship_ended_at: {within: 1 month}
    reason: {fi: Asiakassuhde on voimassa tai päättyi alle kuukausi sitten., en: The relationship is active or ended less than a month ago.}
  - id: timed.marketing-register-gone
    effect: forbid
    law: [GDPR 5(1)(e), GDPR 17(1)(a)]
    when: {operation: record_call, subject.relationship_ended_at: {more_than: 1 month}}
    reason: {fi: Tiedot on poistettava kuukauden kuluttua asiakassuhteen päättymisestä., en: The data is deleted a month after the relationship ended.}
"""


@pytest.fixture
def client(app_config: dict[str, Any], tmp_path: Path) -> Any:
    folder = tmp_path / "policies"
    shutil.copytree(CLEAN, folder)
    (folder / "timed.yaml").write_text(TIMED, encoding="utf-8")
    vocab = folder / "vocabulary.yaml"
    kinds = "  subject_kind:\n    consumer: {fi: Kuluttaja, en: Consumer}\n"
    text = vocab.read_text(encoding="utf-8").replace("  operation:\n", "  operation:\n    record_call: {fi: Nauhoitus, en: Recording a call}\n", 1)
    vocab.write_text(text + kinds, encoding="utf-8")
    app = create_app({**app_config, "KTI_POLICY_DIR": str(folder)})
    yield app.test_client()
    app.extensions["kti"].close()


def record(client: Any, *events: tuple[str, str, dict[str, Any]], subject: str = "cust-77") -> None:
    for i, (etype, at, data) in enumerate(events):
        body = {"id": f"e-{subject}-{i}", "type": etype, "subject_id": subject, "occurred_at": at, "data": data}
        resp = client.post("/v1/events", json=body)
        assert resp.status_code == 201, resp.get_data(as_text=True)


def decide(client: Any, at: str | None, subject: str = "cust-77") -> dict[str, Any]:
    body: dict[str, Any] = {"operation": "record_call", "subject": {"id": subject}}
    if at:
        body["at"] = at
    resp = client.post("/v1/decisions", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return dict(resp.get_json())


HISTORY = (
    ("relationship.started", "2026-01-10T10:00:00+02:00", {"kind": "consumer"}),
    ("relationship.ended", "2026-03-31T15:00:00+03:00", {}),
)


@pytest.mark.parametrize(
    ("at", "decision", "rules"),
    [
        # as it stood: before the start nothing permits, while active the soft opt-in does
        ("2026-01-09T12:00:00+02:00", "deny", ["default.deny"]),
        ("2026-02-01T12:00:00+02:00", "allow", ["timed.soft-opt-in"]),
        # one month from 31 March ends on 30 April (the day of: still within), 1 May is past
        ("2026-04-29T12:00:00+03:00", "deny", ["deletion.after_end"]),
        ("2026-04-30T23:59:00+03:00", "deny", ["deletion.after_end"]),
        ("2026-05-01T00:01:00+03:00", "deny", ["deletion.after_end", "timed.marketing-register-gone"]),
        (None, "deny", ["deletion.after_end", "timed.marketing-register-gone"]),
    ],
)
def test_as_of_decisions_use_the_facts_as_they_stood(client: Any, at: str | None, decision: str,
                                                     rules: list[str]) -> None:
    record(client, *HISTORY)
    body = decide(client, at)
    assert (body["decision"], sorted(r["rule"] for r in body["reasons"])) == (decision, sorted(rules))


def test_as_of_in_a_batch_and_reasons_carry_law(client: Any) -> None:
    record(client, *HISTORY)
    ops = [{"operation": "record_call", "subject": {"id": "cust-77"}, "at": at}
           for at in ("2026-02-01T12:00:00+02:00", "2026-06-01T12:00:00+03:00")]
    resp = client.post("/v1/decisions/batch", json={"operations": ops})
    first, second = resp.get_json()["decisions"]
    assert first["decision"] == "allow" and first["reasons"][0]["law"] == ["SVPL 200(2)"]
    assert second["decision"] == "deny"
    gone = next(r for r in second["reasons"] if r["rule"] == "timed.marketing-register-gone")
    assert gone["law"] == ["GDPR 5(1)(e)", "GDPR 17(1)(a)"]
    assert all(r["law"] == [] for r in second["reasons"] if r["rule"] == "deletion.after_end")


def test_inline_dates_decide_like_recorded_ones(client: Any) -> None:
    body = {"operation": "record_call", "at": "2026-05-01T00:01:00+03:00",
            "subject": {"id": "walk-in", "relationship_ended_at": "2026-03-31T15:00:00+03:00"}}
    got = client.post("/v1/decisions", json=body).get_json()
    assert "timed.marketing-register-gone" in [r["rule"] for r in got["reasons"]]


def test_the_subject_view_shows_dates(client: Any) -> None:
    record(client, *HISTORY, ("erasure.requested", "2026-04-02T10:00:00+03:00", {}))
    view = client.get("/v1/subjects/cust-77").get_json()
    assert view["kind"] == "consumer" and view["relationship_ended_at"] == "2026-03-31T12:00:00+00:00"
    assert view["erasure_requested_at"] == "2026-04-02T07:00:00+00:00" and view["restricted"] is False
    record(client, ("relationship.started", "2026-11-01T10:00:00+02:00", {}),
           ("restriction.registered", "2026-11-02T10:00:00+02:00", {}), subject="cust-77b")
    other = client.get("/v1/subjects/cust-77b").get_json()
    assert other["restricted"] is True and other["restricted_at"] == "2026-11-02T08:00:00+00:00"


def test_the_decision_log_records_at_and_dated_facts(client: Any, app_config: dict[str, Any]) -> None:
    record(client, *HISTORY)
    decide(client, "2026-02-01T12:00:00+02:00")
    line = json.loads(Path(app_config["KTI_DECISION_LOG"]).read_text(encoding="utf-8").splitlines()[-1])
    assert line["request"]["at"].startswith("2026-02-01T")
    assert line["facts"]["relationship"] == "active" and line["facts"]["relationship_ended_at"] is None
    assert "cust-77" not in json.dumps(line)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operation": "disclose", "recipient": {"type": "authority"}, "subject": {"id": "c"}}, "recipient"),
        ({"operation": "store_cookie"}, "cookie"),
        ({"operation": "subject_request", "subject": {"id": "c"},
          "request": {"type": "inquiry", "extended": True}}, "request"),
        ({"operation": "subject_request", "subject": {"id": "c"}, "request": {"type": "access", "copy": 0}}, "request"),
        ({"operation": "delete", "subject": {"id": "c", "relationship_ended_at": "yesterday"}}, "subject"),
        ({"operation": "delete", "subject": {"id": "c", "restricted": "yes"}}, "subject"),
        ({"operation": "delete", "subject": {"consents": []}}, "subject"),
    ],
)
def test_v2_fields_are_400_naming_the_field(client: Any, body: dict[str, Any], field: str) -> None:
    resp = client.post("/v1/decisions", json=body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    err = resp.get_json()
    assert err["error"] == "bad_request" and field in err["details"]["errors"]


def test_country_is_named_when_missing(client: Any) -> None:
    body = {"operation": "disclose", "recipient": {"type": "authority"}, "subject": {"id": "c"}}
    err = client.post("/v1/decisions", json=body).get_json()
    assert err["details"]["errors"]["recipient"] == {"country": ["required for operation 'disclose'"]}
    assert "recipient: country" in err["message"]


def test_unknown_v2_ids_name_field_value_and_known_ids(client: Any) -> None:
    body = {"operation": "store_cookie", "cookie": {"kind": "tracking"}}
    err = client.post("/v1/decisions", json=body).get_json()
    assert err["error"] == "unknown_vocabulary_id"
    assert err["details"]["field"] == "cookie.kind" and err["details"]["value"] == "tracking"
    assert "strictly_necessary" in err["details"]["known"]
