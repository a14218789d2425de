"""facts with time: dated folds, late events, R5 supersession, as-of folds and dated inline facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kti_policy.facts.fold import FactEvent, SubjectFacts, fold_events, inline_facts

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def at(days: int) -> datetime:
    return T0 + timedelta(days=days)


def ev(type_: str, days: int, seq: int = 0, **data: Any) -> FactEvent:
    return FactEvent(type_, at(days), data, seq)


def test_each_fact_keeps_the_time_it_took_effect() -> None:
    f = fold_events([
        ev("relationship.started", 0, 1, kind="consumer"), ev("consent.granted", 2, 2, purpose="direct_marketing"),
        ev("objection.registered", 3, 3, scope="disclosure"), ev("restriction.registered", 4, 4),
        ev("relationship.ended", 10, 5), ev("erasure.requested", 11, 6),
    ])
    assert (f.relationship, f.relationship_started_at, f.relationship_ended_at) == ("ended", at(0), at(10))
    assert (f.erasure_requested, f.erasure_requested_at) == (True, at(11))
    assert (f.restricted, f.restricted_at, f.kind) == (True, at(4), "consumer")
    assert f.objections_at == (("disclosure", at(3)),)
    # R2: the erasure request withdrew the consent given before it
    assert f.consents == frozenset() and f.consents_at == ()
    d = f.to_dict()
    assert d["relationship_ended_at"] == at(10).isoformat() and d["objections_at"] == {"disclosure": at(3).isoformat()}
    assert SubjectFacts.from_dict(d) == f


def test_a_late_event_is_folded_in_its_time_not_its_arrival() -> None:
    # the withdrawal arrives first but happened later: the consent is withdrawn
    f = fold_events([ev("consent.withdrawn", 5, 1, purpose="direct_marketing"),
                     ev("consent.granted", 1, 2, purpose="direct_marketing")])
    assert f.consents == frozenset() and f.withdrawn_consents == {"direct_marketing"}
    # a grant after the withdrawal counts again and clears the refusal
    g = fold_events([ev("consent.withdrawn", 5, 1, purpose="direct_marketing"),
                     ev("consent.granted", 6, 2, purpose="direct_marketing")])
    assert g.consents == {"direct_marketing"} and g.withdrawn_consents == frozenset()
    assert g.consents_at == (("direct_marketing", at(6)),)


def test_r5_a_relationship_started_after_an_erasure_request_is_a_new_one() -> None:
    old = [ev("relationship.started", 0, 1), ev("consent.granted", 1, 2, purpose="disclosure"),
           ev("relationship.ended", 5, 3), ev("erasure.requested", 6, 4)]
    before = fold_events(old)
    assert before.erasure_requested and before.relationship == "ended"
    after = fold_events([*old, ev("relationship.started", 400, 5, kind="business_contact")])
    assert after.erasure_requested is False and after.erasure_requested_at is None
    assert (after.relationship, after.relationship_started_at, after.relationship_ended_at) == ("active", at(400), None)
    assert after.consents == frozenset()  # the old consent went with the erasure request
    assert after.kind == "business_contact"


def test_r5_an_erasure_request_during_a_relationship_stands() -> None:
    f = fold_events([ev("relationship.started", 0, 1), ev("erasure.requested", 6, 2)])
    assert f.erasure_requested and f.relationship == "active"
    # the same instant: arrival order decides (the start arrived after the request)
    g = fold_events([ev("erasure.requested", 6, 1), ev("relationship.started", 6, 2)])
    assert g.erasure_requested is False


def test_restriction_registered_and_lifted() -> None:
    assert fold_events([ev("restriction.registered", 1, 1)]).restricted
    lifted = fold_events([ev("restriction.registered", 1, 1), ev("restriction.lifted", 2, 2)])
    assert lifted.restricted is False and lifted.restricted_at is None


HISTORY = [
    ev("relationship.started", 0, 1), ev("consent.granted", 1, 2, purpose="direct_marketing"),
    ev("consent.withdrawn", 10, 3, purpose="direct_marketing"), ev("relationship.ended", 20, 4),
    ev("erasure.requested", 30, 5),
]


@pytest.mark.parametrize(
    ("when", "consents", "relationship", "erasure"),
    [
        (at(0) - timedelta(seconds=1), frozenset(), None, False),  # before anything happened
        (at(0), frozenset(), "active", False),  # an event at exactly `at` counts
        (at(5), frozenset({"direct_marketing"}), "active", False),
        (at(10) - timedelta(microseconds=1), frozenset({"direct_marketing"}), "active", False),
        (at(10), frozenset(), "active", False),  # M4: from the withdrawal on, not before
        (at(25), frozenset(), "ended", False),
        (at(31), frozenset(), "ended", True),
    ],
)
def test_as_of_folds_only_what_had_happened(when: datetime, consents: frozenset[str], relationship: str | None,
                                            erasure: bool) -> None:
    f = fold_events(list(reversed(HISTORY)), at=when)
    assert (f.consents, f.relationship, f.erasure_requested) == (consents, relationship, erasure)


# --- inline facts -----------------------------------------------------------------------------


def test_inline_dates_imply_their_facts() -> None:
    assert inline_facts({"relationship_ended_at": at(3)}).relationship == "ended"
    assert inline_facts({"relationship_started_at": at(3)}).relationship == "active"
    both = inline_facts({"relationship_started_at": at(1), "relationship_ended_at": at(3)})
    assert (both.relationship, both.relationship_ended_at) == ("ended", at(3))
    again = inline_facts({"relationship_started_at": at(5), "relationship_ended_at": at(3)})
    assert (again.relationship, again.relationship_ended_at) == ("active", None)
    assert inline_facts({"relationship": "active", "relationship_ended_at": at(3)}).relationship == "ended"
    assert inline_facts({"relationship": "ended", "relationship_started_at": at(3)}).relationship == "ended"


def test_inline_dates_decide_r5_as_events_would() -> None:
    superseded = inline_facts({"erasure_requested_at": at(1), "relationship_started_at": at(5)})
    assert superseded.erasure_requested is False
    stands = inline_facts({"erasure_requested_at": at(5), "relationship_started_at": at(1)})
    assert stands.erasure_requested and stands.erasure_requested_at == at(5)
    assert inline_facts({"erasure_requested_at": at(5)}).erasure_requested


@pytest.mark.parametrize(
    "inline",
    [
        {"relationship": "active"},
        {"relationship_started_at": at(50)},
        {"relationship_started_at": at(50), "erasure_requested_at": at(1), "erasure_requested": False},
        {"restricted": False, "kind": "business_contact"},
    ],
)
def test_inline_facts_never_lift_a_recorded_restriction(inline: dict[str, Any]) -> None:
    recorded = fold_events([ev("relationship.started", 0, 1, kind="consumer"), ev("relationship.ended", 5, 2),
                            ev("erasure.requested", 6, 3), ev("restriction.registered", 7, 4)])
    merged = recorded.merge_inline(inline)
    assert merged.relationship == "ended" and merged.relationship_ended_at == at(5)
    assert merged.erasure_requested and merged.erasure_requested_at == at(6)
    assert merged.restricted and merged.kind == "consumer"


def test_inline_restrictions_add_to_recorded_facts() -> None:
    recorded = fold_events([ev("relationship.started", 0, 1, kind="business_contact")])
    merged = recorded.merge_inline({"relationship_ended_at": at(9), "restricted": True, "kind": "consumer",
                                    "erasure_requested": True})
    assert (merged.relationship, merged.relationship_ended_at) == ("ended", at(9))
    assert merged.relationship_started_at == at(0)
    assert merged.restricted and merged.kind == "consumer" and merged.erasure_requested


def test_old_decision_log_facts_read_with_defaults() -> None:
    old = {"consents": ["disclosure"], "objections": [], "relationship": "active", "erasure_requested": False,
           "access_requests": [], "last_access_request_at": None}
    f = SubjectFacts.from_dict(old)
    assert f.consents == {"disclosure"} and f.relationship_started_at is None and f.restricted is False
