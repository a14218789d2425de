"""obligations: every v2 obligation's date and fields, counted in Helsinki days, across holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from kti_policy.decide.decision import Decider
from kti_policy.decide.operation import parse_operation
from kti_policy.facts.fold import SubjectFacts
from kti_policy.policy.loader import build_policy_set

VOCAB = (Path(__file__).parent.parent / "data" / "clean" / "vocabulary.yaml").read_text(encoding="utf-8").replace(
    "  data_category:\n",
    "  data_category:\n    accounting_vouchers: {fi: Tositteet, en: Vouchers}\n"
    "    marketing_list: {fi: Lista, en: List}\n",
).replace("  request_type:\n", "  request_type:\n    rectification: {fi: Korjaus, en: Rectification}\n") + """
periods:
  vouchers:
    label: {fi: Tositteet, en: Vouchers}
    period: 6 years from year end
    law: [KPL 2:10]
"""
POLICY = """\
policy: duties
title: {fi: Velvoitteet, en: Duties}
source: "§8"
rules:
  - id: duties.delete
    effect: permit
    when: {operation: delete, subject.erasure_requested: true}
    reason: {fi: Poista., en: Delete.}
    obligations:
      - delete_by: {from: subject.erasure_requested_at, within: 1 month}
  - id: duties.retain
    effect: permit
    when: {operation: retain, data_categories: {contains: accounting_vouchers}}
    reason: {fi: Säilytä., en: Keep.}
    obligations:
      - retain_until: {from: subject.relationship_ended_at, period: vouchers, data_categories: [accounting_vouchers]}
      - delete_by: {from: subject.relationship_ended_at, after: vouchers, within: 1 month, data_categories: [accounting_vouchers]}
  - id: duties.rectify
    effect: permit
    when: {operation: subject_request, request.type: rectification}
    reason: {fi: Korjaa., en: Rectify.}
    obligations:
      - respond_by: {months: 3}
      - extension_notice_by: {months: 1}
      - verify_identity: {}
      - notify_recipients: {}
  - id: duties.access
    effect: permit
    when: {operation: subject_request, request.type: access}
    reason: {fi: Tarkasta., en: Access.}
    obligations:
      - access_fee: {free_copies: 1}
"""
PS = build_policy_set({"vocabulary.yaml": ("vocabulary.yaml", VOCAB), "duties.yaml": ("duties.yaml", POLICY)})
DECIDER = Decider(PS)
NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def decide(facts: SubjectFacts | None = None, **body: Any) -> list[dict[str, Any]]:
    body.setdefault("subject", {"id": "c-1"})
    d = DECIDER.decide(parse_operation(body, PS.vocabulary), facts, NOW)
    assert d.error is None, d.error
    return [o.to_dict("en") for o in d.obligations]


def helsinki(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("requested", "due"),
    [
        ("2026-11-15T10:00:00+02:00", "2026-12-15"),
        # one month from 24 Nov is 24 Dec (Christmas Eve), then 25, 26 (holidays), 27 (Sunday) -> 28 Dec
        ("2026-11-24T10:00:00+02:00", "2026-12-28"),
        # 31 Jan + 1 month = 28 Feb 2026, a Saturday -> Monday 2 March
        ("2026-01-31T10:00:00+02:00", "2026-03-02"),
        # Helsinki date, not UTC: 30 Nov 23:30 UTC is already 1 Dec in Helsinki -> 1 Jan (holiday), a weekend -> Mon 4 Jan
        ("2026-11-30T23:30:00+00:00", "2027-01-04"),
    ],
)
def test_delete_by_one_month_after_the_erasure_request(requested: str, due: str) -> None:
    facts = SubjectFacts(erasure_requested=True, erasure_requested_at=helsinki(requested))
    [ob] = decide(facts, operation="delete", data_categories=["marketing_list"])
    assert (ob["type"], ob["due"], ob["data_categories"], ob["rule"]) == ("delete_by", due, ["marketing_list"], "duties.delete")
    assert "marketing_list" in ob["message"] and due in ob["message"]


def test_delete_by_from_an_undated_inline_request_counts_from_the_operation() -> None:
    [ob] = decide(None, operation="delete", subject={"id": "c", "erasure_requested": True},
                  at="2026-03-10T12:00:00+02:00")
    assert ob["due"] == "2026-04-10"


def test_retain_until_is_exact_and_delete_by_follows_it() -> None:
    facts = SubjectFacts(relationship="ended", relationship_ended_at=helsinki("2026-05-03T10:00:00+03:00"))
    retain, delete = decide(facts, operation="retain", data_categories=["accounting_vouchers", "marketing_list"])
    # 31 Dec 2032 is a Friday but the law's date is exact either way; delete one month after -> 31 Jan 2033 (Mon)
    assert (retain["type"], retain["due"], retain["data_categories"]) == ("retain_until", "2032-12-31", ["accounting_vouchers"])
    assert (delete["type"], delete["due"]) == ("delete_by", "2033-01-31")
    ended_2027 = SubjectFacts(relationship="ended", relationship_ended_at=helsinki("2027-02-01T10:00:00+02:00"))
    retain2, delete2 = decide(ended_2027, operation="retain", data_categories=["accounting_vouchers"])
    # 31 Dec 2033 is a Saturday: retain_until stays, delete_by = 31 Jan 2034 (Tuesday)
    assert (retain2["due"], delete2["due"]) == ("2033-12-31", "2034-01-31")


def test_retain_until_is_left_out_while_the_relationship_is_active() -> None:
    assert decide(SubjectFacts(relationship="active"), operation="retain", data_categories=["accounting_vouchers"]) == []


def test_rights_request_duties() -> None:
    obs = decide(None, operation="subject_request",
                 request={"type": "rectification", "received_at": "2026-12-24T10:00:00+02:00"})
    by_type = {o["type"]: o for o in obs}
    # three months from 24 Dec is 24 Mar 2027 (Wednesday); the notice one month after: 24 Jan 2027 is a Sunday -> 25 Jan
    assert by_type["respond_by"]["due"] == "2027-03-24"
    assert by_type["extension_notice_by"]["due"] == "2027-01-25"
    assert set(by_type) == {"respond_by", "extension_notice_by", "verify_identity", "notify_recipients"}
    assert "due" not in by_type["verify_identity"] and by_type["notify_recipients"]["message"]


@pytest.mark.parametrize(
    ("request_", "chargeable"),
    [({}, False), ({"copy": 1}, False), ({"copy": 2}, True), ({"excessive": True}, True), ({"excessive": False}, False)],
)
def test_access_fee_only_for_a_further_copy_or_an_excessive_request(request_: dict[str, Any], chargeable: bool) -> None:
    [fee] = decide(SubjectFacts(access_requests=(datetime(2026, 6, 1, tzinfo=UTC),)), operation="subject_request",
                   request={"type": "access", **request_})
    assert fee["chargeable"] is chargeable
    # an earlier request in the past 12 months makes no charge by itself (RULES Q3)


def test_finnish_dates_in_finnish() -> None:
    facts = SubjectFacts(erasure_requested=True, erasure_requested_at=helsinki("2026-11-15T10:00:00+02:00"))
    d = DECIDER.decide(parse_operation({"operation": "delete", "subject": {"id": "c"}}, PS.vocabulary), facts, NOW)
    assert "15.12.2026" in d.to_dict("fi")["obligations"][0]["message"]
    assert date(2026, 12, 15).isoformat() in d.to_dict("en")["obligations"][0]["message"]
